//! What `trace`, `record` and `replay` show: filters on process, hook,
//! rule, severity, device and COW, applied to each record in user space,
//! and — where the kernel can tell — turned into the record mask, so
//! records a filter would drop never cross to user space.

use crate::kernel::decode::{DevNum, Record};
use crate::rules::{self, Hit, RuleId, RuleSet, Severity};
use pfnwatch_common::{Class, Hook, RecordMask, abi, class, vm_flags};
use std::collections::BTreeSet;

/// A `--device` argument: a device number, or a file by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceMatch {
    /// `1:1`: the device node's major:minor.
    Number(DevNum),
    /// `mem`, `/dev/mem`, `0000:00:02.0/resource0` or a full sysfs path:
    /// the file's name, and its directory's name when one is given (the
    /// PCI address of a BAR file).
    File {
        name: String,
        parent: Option<String>,
    },
}

impl DeviceMatch {
    pub fn parse(text: &str) -> Result<DeviceMatch, String> {
        let text = text.trim();
        if let Some((major, minor)) = text.split_once(':')
            && let (Ok(major), Ok(minor)) = (major.parse(), minor.parse())
        {
            return Ok(DeviceMatch::Number(DevNum { major, minor }));
        }
        let mut parts = text.rsplit('/').filter(|p| !p.is_empty());
        let name = parts.next().ok_or_else(|| {
            format!("{text:?}: expected major:minor (e.g. 1:1) or a file name (e.g. /dev/mem)")
        })?;
        Ok(DeviceMatch::File {
            name: name.to_owned(),
            parent: parts.next().map(str::to_owned),
        })
    }

    pub fn matches(&self, r: &Record) -> bool {
        let Some(file) = &r.file else {
            return false;
        };
        match self {
            DeviceMatch::Number(dev) => file.rdev == *dev,
            DeviceMatch::File { name, parent } => {
                // The root of a filesystem (devtmpfs for /dev/mem) names no
                // directory, so "/dev/mem" matches the file "mem" in "/".
                let dir_known = !file.parent.is_empty() && file.parent != "/";
                file.name == *name
                    && match parent {
                        Some(p) if dir_known => file.parent == *p,
                        _ => true,
                    }
            }
        }
    }
}

/// Every filter given; an empty one lets everything through. Filters of
/// different kinds must all match; repeats of one kind are alternatives.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Thread or process ids.
    pub pids: BTreeSet<u32>,
    /// Exact task names (the kernel keeps 15 bytes).
    pub comms: BTreeSet<String>,
    /// None: every hook.
    pub hooks: Option<BTreeSet<Hook>>,
    /// Records that match one of these rules.
    pub rules: BTreeSet<RuleId>,
    /// Records matching a rule at least this severe.
    pub min_severity: Option<Severity>,
    pub devices: Vec<DeviceMatch>,
    /// Only calls on COW mappings (MAP_PRIVATE and writable).
    pub cow_only: bool,
}

impl Filter {
    /// Whether a record and the rules it matched pass every filter.
    pub fn matches(&self, r: &Record, hits: &[Hit]) -> bool {
        (self.pids.is_empty() || self.pids.contains(&r.tgid) || self.pids.contains(&r.pid))
            && (self.comms.is_empty() || self.comms.contains(&r.comm))
            && (self.devices.is_empty() || self.devices.iter().any(|d| d.matches(r)))
            && self.kernel_part(r.hook, r.class, hits)
    }

    /// The filters the kernel's (hook, class) decides alone, given the
    /// rules that matched.
    fn kernel_part(&self, hook: Hook, class: Class, hits: &[Hit]) -> bool {
        self.hooks.as_ref().is_none_or(|h| h.contains(&hook))
            && (!self.cow_only || class.has(class::COW))
            && (self.rules.is_empty() || hits.iter().any(|h| self.rules.contains(&h.rule.id)))
            && self
                .min_severity
                .is_none_or(|min| hits.iter().any(|h| h.severity >= min))
    }

    /// The pids the kernel can filter records by: all of `pids` when they
    /// fit its slots, else none (user space then filters them alone).
    pub fn kernel_pids(&self) -> Vec<u32> {
        if self.pids.len() <= abi::PID_FILTER_SLOTS {
            self.pids.iter().copied().collect()
        } else {
            Vec::new()
        }
    }

    /// The (hook, class) pairs these filters can let through, as a record
    /// mask to AND into the selection's. A rule's user-space conditions
    /// (`needs`) cannot be known per class, so they are taken as met: the
    /// mask is never narrower than what `matches` accepts.
    pub fn record_mask(&self, rules: &RuleSet) -> RecordMask {
        let needs_hits = !self.rules.is_empty() || self.min_severity.is_some();
        // Every need a rule has today holds on this record: a pte (level
        // 0) in a VM_PFNMAP|VM_IO vma, on an arch with pte_special.
        let permissive = RuleSet::new(
            rules.config.clone(),
            rules::Context {
                arch_pte_special: true,
            },
        );
        RecordMask::from_fn(|hook, cls| {
            let hits = if needs_hits {
                permissive.evaluate(&probe(hook, cls))
            } else {
                Vec::new()
            };
            self.kernel_part(hook, cls, &hits)
        })
    }
}

/// A record of (hook, class) on which every user-space rule condition holds.
fn probe(hook: Hook, class: Class) -> Record {
    Record {
        vm_flags: vm_flags::VM_PFNMAP | vm_flags::VM_IO,
        ..Record::new(hook, class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Context, RuleConfig};
    use pfnwatch_common::Level;
    use pfnwatch_common::class::{
        ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
    };

    fn rules() -> RuleSet {
        RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        )
    }

    #[test]
    fn the_kernel_filters_pids_while_they_fit_its_slots() {
        let some = Filter {
            pids: [7, 3].into(),
            ..Filter::default()
        };
        assert_eq!(some.kernel_pids(), [3, 7]);
        assert!(Filter::default().kernel_pids().is_empty());
        let slots = abi::PID_FILTER_SLOTS as u32;
        let full = Filter {
            pids: (1..=slots).collect(),
            ..Filter::default()
        };
        assert_eq!(full.kernel_pids().len(), abi::PID_FILTER_SLOTS);
        // One more: none in the kernel, so user space sees (and filters) all.
        let many = Filter {
            pids: (1..=slots + 1).collect(),
            ..Filter::default()
        };
        assert!(many.kernel_pids().is_empty());
    }

    fn rec(hook: Hook, class: u16) -> Record {
        let mut r = probe(hook, Class(class));
        r.pid = 11;
        r.tgid = 10;
        r.comm = "trig".into();
        r.file = Some(crate::kernel::decode::test_file(
            "resource0",
            "0000:00:02.0",
            (0, 0),
        ));
        r
    }

    fn devmem(hook: Hook, class: u16) -> Record {
        let mut r = rec(hook, class);
        r.file = Some(crate::kernel::decode::test_file("mem", "/", (1, 1)));
        r
    }

    fn passes(f: &Filter, r: &Record) -> bool {
        f.matches(r, &rules().evaluate(r))
    }

    fn bit(mask: &RecordMask, hook: Hook, class: u16) -> bool {
        mask.contains(hook, Class(class))
    }

    const DEV_COW: u16 = PFNMAP | COW | SPECIAL | PFN_MATCH | NO_PAGE;

    #[test]
    fn empty_filter_passes_everything_and_masks_nothing() {
        let f = Filter::default();
        assert!(passes(&f, &rec(Hook::VmNormalPage, 0)));
        assert_eq!(f.record_mask(&rules()), RecordMask::all());
    }

    #[test]
    fn process_filters_match_thread_or_process_and_exact_comm() {
        let f = Filter {
            pids: [10].into(),
            ..Filter::default()
        };
        assert!(passes(&f, &rec(Hook::VmNormalPage, 0)));
        let f = Filter {
            pids: [11].into(),
            ..Filter::default()
        };
        assert!(passes(&f, &rec(Hook::VmNormalPage, 0)), "thread id");
        let f = Filter {
            pids: [12].into(),
            ..Filter::default()
        };
        assert!(!passes(&f, &rec(Hook::VmNormalPage, 0)));
        let f = Filter {
            comms: ["trig".to_owned(), "x".to_owned()].into(),
            ..Filter::default()
        };
        assert!(passes(&f, &rec(Hook::VmNormalPage, 0)));
        let f = Filter {
            comms: ["tri".to_owned()].into(),
            ..Filter::default()
        };
        assert!(
            !passes(&f, &rec(Hook::VmNormalPage, 0)),
            "not a prefix match"
        );
    }

    #[test]
    fn devices_by_number_name_or_path() {
        let cases = [
            ("1:1", true, false),
            ("mem", true, false),
            ("/dev/mem", true, false),
            ("resource0", false, true),
            ("0000:00:02.0/resource0", false, true),
            ("/sys/bus/pci/devices/0000:00:02.0/resource0", false, true),
            ("/sys/bus/pci/devices/0000:00:03.0/resource0", false, false),
            ("10:1", false, false),
        ];
        for (arg, mem, bar) in cases {
            let f = Filter {
                devices: vec![DeviceMatch::parse(arg).unwrap()],
                ..Filter::default()
            };
            assert_eq!(
                passes(&f, &devmem(Hook::VmNormalPage, 0)),
                mem,
                "{arg} on mem"
            );
            assert_eq!(passes(&f, &rec(Hook::VmNormalPage, 0)), bar, "{arg} on BAR");
            let mut anon = rec(Hook::VmNormalPage, 0);
            anon.file = None;
            assert!(!passes(&f, &anon), "{arg}: a vma without a file");
        }
        assert!(DeviceMatch::parse("/").unwrap_err().contains("major:minor"));
    }

    #[test]
    fn rule_and_severity_filters_follow_the_hits() {
        let r1 = rec(Hook::RemapPfnRange, PFNMAP | COW | PFN_MATCH);
        let r8 = rec(Hook::VmNormalPage, PFNMAP | COW | SPECIAL | NO_PAGE);
        let plain = rec(Hook::VmNormalPage, DEV_COW);
        let f = Filter {
            rules: [RuleId::R8].into(),
            ..Filter::default()
        };
        assert!(!passes(&f, &r1) && passes(&f, &r8) && !passes(&f, &plain));
        let f = Filter {
            min_severity: Some(Severity::Warning),
            ..Filter::default()
        };
        let r3 = rec(Hook::RemapPfnRange, COW | PARTIAL | ERROR);
        assert!(!passes(&f, &r1), "R1 is info");
        assert!(!passes(&f, &r8), "R8 is info where ptes have a special bit");
        assert!(passes(&f, &r3) && !passes(&f, &plain));
        let f = Filter {
            min_severity: Some(Severity::Info),
            ..Filter::default()
        };
        assert!(
            passes(&f, &r1) && !passes(&f, &plain),
            "no rule, no severity"
        );
    }

    #[test]
    fn mask_keeps_only_what_can_pass() {
        let f = Filter {
            hooks: Some([Hook::RemapPfnRange].into()),
            cow_only: true,
            ..Filter::default()
        };
        let mask = f.record_mask(&rules());
        assert!(bit(&mask, Hook::RemapPfnRange, PFNMAP | COW));
        assert!(!bit(&mask, Hook::RemapPfnRange, PFNMAP), "not COW");
        assert!(!bit(&mask, Hook::VmNormalPage, DEV_COW), "other hook");

        let f = Filter {
            rules: [RuleId::R8].into(),
            ..Filter::default()
        };
        let mask = f.record_mask(&rules());
        assert!(bit(
            &mask,
            Hook::VmNormalPage,
            PFNMAP | COW | SPECIAL | NO_PAGE
        ));
        assert!(bit(&mask, Hook::VmNormalPagePmd, PFNMAP | COW | SPECIAL));
        assert!(!bit(&mask, Hook::VmNormalPage, DEV_COW));
        assert!(!bit(&mask, Hook::RemapPfnRange, PFNMAP | COW));

        // R7 needs pte_special, which the mask takes as given: a host
        // without it still gets the records and decides in user space.
        let f = Filter {
            min_severity: Some(Severity::Critical),
            ..Filter::default()
        };
        let mask = f.record_mask(&RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: false,
            },
        ));
        assert!(
            bit(&mask, Hook::VmNormalPage, PFNMAP | COW | PFN_MATCH),
            "R7"
        );
        assert!(
            bit(&mask, Hook::VmfInsertPfnProt, PFNMAP | MIXEDMAP),
            "R4 at a pfn insert into PFNMAP|MIXEDMAP"
        );
        assert!(
            !bit(&mask, Hook::VmNormalPage, PFNMAP | MIXEDMAP),
            "never per lookup"
        );
        assert!(!bit(&mask, Hook::VmfInsertMixed, MIXEDMAP), "R4 is info");
        assert!(!bit(&mask, Hook::VmNormalPage, PFNMAP | COW | ANON));
    }

    #[test]
    fn mask_is_never_narrower_than_the_filter() {
        // Every (hook, class) a record can pass with must be in the mask.
        let rs = rules();
        for f in [
            Filter {
                rules: [RuleId::R5, RuleId::R7].into(),
                ..Filter::default()
            },
            Filter {
                min_severity: Some(Severity::Warning),
                cow_only: true,
                ..Filter::default()
            },
        ] {
            let mask = f.record_mask(&rs);
            for hook in Hook::ALL {
                for raw in 0..class::SLOTS as u16 {
                    let mut r = rec(hook, raw);
                    for level in [Level::Pte, Level::Pmd] {
                        r.level = level;
                        if passes(&f, &r) {
                            assert!(bit(&mask, hook, raw), "{hook} {}", Class(raw));
                        }
                    }
                }
            }
        }
    }
}
