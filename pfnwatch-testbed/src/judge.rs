//! Judging what pfnwatch reported for one scenario against the kernel's
//! rules. Pure functions over records, so they are tested on the host.

use crate::expect::{self, KernelVersion};
use crate::report::Report;
use pfnwatch::kernel::counters::Counts;
use pfnwatch::kernel::decode::Record;
use pfnwatch::rules::RuleId;
use pfnwatch_common::{Class, Hook, class};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Calls per (hook, class).
pub type Tally = BTreeMap<(Hook, Class), u64>;

/// What pfnwatch printed between the snapshot before and after a scenario.
#[derive(Debug, Default)]
pub struct Window {
    pub records: Vec<Record>,
    /// The rule ids pfnwatch marked each record with (same order).
    pub rules: Vec<Vec<RuleId>>,
    /// The driver pfnwatch named for each record (same order).
    pub drivers: Vec<Option<String>>,
    pub counts: Counts,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

impl Finding {
    fn new(scenario: &str, check: &str, ok: bool, detail: String) -> Finding {
        Finding {
            check: format!("{scenario}/{check}"),
            ok,
            detail,
        }
    }
}

/// Records made by the scenario's processes on the scenario's mappings. A
/// mapping whose mmap failed has no range: its records are known by file.
pub fn own_records<'a>(
    report: &'a Report,
    records: &'a [Record],
) -> impl Iterator<Item = &'a Record> {
    records.iter().filter(|r| {
        report.pids().any(|p| p == r.tgid)
            && report.mappings.iter().any(|m| {
                if m.start == 0 && m.end == 0 {
                    let name = m.label.rsplit('/').next().unwrap_or_default();
                    r.file.as_ref().is_some_and(|f| f.name == name)
                } else {
                    r.vm_start == m.start && r.vm_end == m.end
                }
            })
    })
}

pub fn tally<'a>(records: impl Iterator<Item = &'a Record>) -> Tally {
    let mut t = Tally::new();
    for r in records {
        *t.entry((r.hook, r.class)).or_default() += 1;
    }
    t
}

pub fn describe(t: &Tally) -> String {
    if t.is_empty() {
        return "nothing".to_owned();
    }
    let parts: Vec<String> = t
        .iter()
        .map(|((h, c), n)| format!("{h} {c} x{n}"))
        .collect();
    parts.join("; ")
}

pub fn judge(kernel: KernelVersion, report: &Report, window: &Window) -> Vec<Finding> {
    let scenario = report.scenario;
    let name = scenario.name();
    let mut out = Vec::new();

    let got = tally(own_records(report, &window.records));
    if expect::SUPPORTED.contains(&kernel) {
        let want = scenario.expected(kernel);
        let detail = if got == want {
            describe(&got)
        } else {
            format!(
                "expected {}; pfnwatch saw {}",
                describe(&want),
                describe(&got)
            )
        };
        out.push(Finding::new(name, "counts", got == want, detail));
    } else {
        let detail = format!(
            "no expectations were derived for kernel {kernel}; pfnwatch saw {}",
            describe(&got)
        );
        out.push(Finding::new(name, "counts", false, detail));
    }

    if let Some(want) = scenario.move_pages_status(kernel) {
        let got = report.move_pages_status.clone().unwrap_or_default();
        let detail = format!("move_pages status {got:?}, expected {want:?}");
        out.push(Finding::new(name, "move-pages", got == want, detail));
    }

    if scenario.expect().pfn_rule_holds {
        let (ok, detail) = pfn_rule(report, &window.records);
        out.push(Finding::new(name, "pfn-rule", ok, detail));
    }

    if let Some(driver) = scenario.expect().driver {
        let (ok, detail) = driver_named(report, window, driver);
        out.push(Finding::new(name, "driver", ok, detail));
    }

    let (ok, detail) = counters_agree(window);
    out.push(Finding::new(name, "counters", ok, detail));

    let (ok, detail) = rules_fired(kernel, report, window);
    out.push(Finding::new(name, "rules", ok, detail));

    let want: BTreeMap<(Hook, u32), u64> = scenario
        .expect()
        .errors
        .iter()
        .map(|(h, e, n)| ((*h, *e), *n))
        .collect();
    let got: BTreeMap<(Hook, u32), u64> = window
        .counts
        .errors
        .iter()
        .flat_map(|(h, m)| m.iter().map(move |(e, n)| ((*h, *e), *n)))
        .collect();
    out.push(Finding::new(
        name,
        "errors",
        got == want,
        format!("errno counts {got:?}, expected {want:?}"),
    ));

    if name == "idle" {
        let during = window
            .records
            .iter()
            .filter(|r| report.pids().any(|p| p == r.tgid))
            .filter(|r| (report.start_ns..=report.end_ns).contains(&r.ts_ns))
            .count();
        out.push(Finding::new(
            name,
            "quiet",
            during == 0,
            format!("{during} records from the idle process while it slept"),
        ));
    }
    out
}

/// Rule 2, observed: every lookup that found a COW copy (an anonymous
/// page, only ever on a page the process wrote) has a pfn that differs from
/// vm_pgoff + off, and every lookup of a device pte (special) matches it.
fn pfn_rule(report: &Report, records: &[Record]) -> (bool, String) {
    let lookups = [Hook::VmNormalPage, Hook::FolioWalkStart];
    let mut copies = 0;
    let mut devices = 0;
    let mut bad = Vec::new();
    for r in own_records(report, records).filter(|r| lookups.contains(&r.hook)) {
        let Some(pfn) = r.pfn else { continue };
        let page = r.page_offset();
        let written = report
            .mappings
            .iter()
            .any(|m| m.start == r.vm_start && m.written_pages.contains(&page));
        let matches = pfn == r.rule_pfn();
        if r.class.has(class::ANON) {
            copies += 1;
            if matches || !written {
                bad.push(format!("copy at page {page} pfn {pfn:#x} ({})", r.class));
            }
        } else if r.class.has(class::SPECIAL) {
            devices += 1;
            if !matches {
                bad.push(format!(
                    "device page {page} pfn {pfn:#x} != vm_pgoff+off {:#x}",
                    r.rule_pfn()
                ));
            }
        } else {
            bad.push(format!(
                "page {page} neither a copy nor special ({})",
                r.class
            ));
        }
    }
    let mut detail = format!(
        "{copies} lookups of COW copies (pfn != vm_pgoff+off), {devices} of device ptes (pfn == vm_pgoff+off)"
    );
    if !bad.is_empty() {
        let _ = write!(detail, "; wrong: {}", bad.join(", "));
    }
    (bad.is_empty() && copies > 0 && devices > 0, detail)
}

/// The rules pfnwatch marked on the scenario's own records must be exactly
/// the expected ones, and nothing else in the window may break a rule.
fn rules_fired(kernel: KernelVersion, report: &Report, window: &Window) -> (bool, String) {
    let mut own = BTreeMap::<RuleId, u64>::new();
    let mut stray = BTreeMap::<RuleId, u64>::new();
    let mine: Vec<*const Record> = own_records(report, &window.records)
        .map(|r| r as *const Record)
        .collect();
    for (r, ids) in window.records.iter().zip(&window.rules) {
        let into = if mine.contains(&(r as *const Record)) {
            &mut own
        } else {
            &mut stray
        };
        for id in ids {
            *into.entry(*id).or_default() += 1;
        }
    }
    let want: BTreeMap<RuleId, u64> = report.scenario.rules(kernel).iter().copied().collect();
    let show = |m: &BTreeMap<RuleId, u64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    (
        own == want && stray.is_empty(),
        format!(
            "rules on its mappings: {} (expected {}); elsewhere: {}",
            show(&own),
            show(&want),
            show(&stray)
        ),
    )
}

/// Every record of the scenario's own mappings names the driver behind
/// them (and there is at least one).
fn driver_named(report: &Report, window: &Window, driver: &str) -> (bool, String) {
    let mine: Vec<*const Record> = own_records(report, &window.records)
        .map(|r| r as *const Record)
        .collect();
    let mut named = BTreeMap::<String, u64>::new();
    for (r, d) in window.records.iter().zip(&window.drivers) {
        if mine.contains(&(r as *const Record)) {
            let d = d.clone().unwrap_or_else(|| "(none)".to_owned());
            *named.entry(d).or_default() += 1;
        }
    }
    let ok = !named.is_empty() && named.keys().all(|d| d == driver);
    let show: Vec<String> = named.iter().map(|(d, n)| format!("{d} x{n}")).collect();
    (
        ok,
        format!(
            "drivers its records name: {} (want {driver})",
            if show.is_empty() {
                "no records".to_owned()
            } else {
                show.join(", ")
            }
        ),
    )
}

/// With every call recorded (trace --all), the in-kernel per-CPU counters
/// must grow by exactly the number of records, and nothing may be dropped.
fn counters_agree(window: &Window) -> (bool, String) {
    let counted: u64 = Hook::ALL.iter().map(|h| window.counts.hook_total(*h)).sum();
    let recorded = window.records.len() as u64;
    let ok = counted == recorded && window.counts.drops == 0;
    (
        ok,
        format!(
            "per-CPU counters +{counted}, records {recorded}, dropped {}",
            window.counts.drops
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Mapping;

    fn rec(hook: Hook, class: u16, tgid: u32, addr_page: u64, pfn: u64) -> Record {
        Record {
            ts_ns: 5,
            pid: tgid,
            tgid,
            comm: "t".into(),
            vm_flags: 0x400,
            vm_start: 0x10000,
            vm_end: 0x14000,
            vm_pgoff: 0xf0,
            addr: 0x10000 + addr_page * 4096,
            pfn: Some(pfn),
            size: 4096,
            ..Record::new(hook, Class(class))
        }
    }

    fn report() -> Report {
        Report {
            scenario: crate::scenario::Scenario::DevmemPrivate,
            tgid: 10,
            children: vec![11],
            mappings: vec![Mapping {
                label: "/dev/mem".into(),
                start: 0x10000,
                end: 0x14000,
                written_pages: vec![1],
            }],
            start_ns: 1,
            end_ns: 9,
            move_pages_status: None,
        }
    }

    #[test]
    fn own_records_filters_by_process_and_vma() {
        let mut other_vma = rec(Hook::VmNormalPage, 0, 10, 0, 0xf0);
        other_vma.vm_start = 0x20000;
        let records = vec![
            rec(Hook::VmNormalPage, 0, 10, 0, 0xf0),
            rec(Hook::VmNormalPage, 0, 11, 0, 0xf0),
            rec(Hook::VmNormalPage, 0, 12, 0, 0xf0),
            other_vma,
        ];
        assert_eq!(own_records(&report(), &records).count(), 2);
    }

    #[test]
    fn pfn_rule_needs_copies_and_devices_that_behave() {
        let cow = class::COW;
        let good = vec![
            rec(Hook::VmNormalPage, cow | class::ANON, 10, 1, 0x38ea),
            rec(
                Hook::VmNormalPage,
                cow | class::SPECIAL | class::PFN_MATCH,
                10,
                0,
                0xf0,
            ),
        ];
        let (ok, detail) = pfn_rule(&report(), &good);
        assert!(ok, "{detail}");
        // A copy whose pfn still follows the rule is no copy.
        let bad = vec![
            rec(Hook::VmNormalPage, cow | class::ANON, 10, 1, 0xf1),
            rec(Hook::VmNormalPage, cow | class::SPECIAL, 10, 0, 0xf0),
        ];
        let (ok, detail) = pfn_rule(&report(), &bad);
        assert!(!ok);
        assert!(detail.contains("copy at page 1"), "{detail}");
        // A copy on a page the process never wrote cannot be.
        let stray = vec![
            rec(Hook::VmNormalPage, cow | class::ANON, 10, 2, 0x38ea),
            rec(Hook::VmNormalPage, cow | class::SPECIAL, 10, 0, 0xf0),
        ];
        assert!(!pfn_rule(&report(), &stray).0);
        // A device pte off the rule breaks it.
        let off = vec![
            rec(Hook::VmNormalPage, cow | class::ANON, 10, 1, 0x38ea),
            rec(Hook::VmNormalPage, cow | class::SPECIAL, 10, 3, 0xf0),
        ];
        let (ok, detail) = pfn_rule(&report(), &off);
        assert!(!ok && detail.contains("device page 3"), "{detail}");
        // Without any lookup of a copy there is nothing to show.
        assert!(!pfn_rule(&report(), &good[1..]).0);
    }

    #[test]
    fn counters_must_equal_records_without_drops() {
        let mut w = Window {
            records: vec![rec(Hook::VmNormalPage, 0, 10, 0, 0xf0)],
            ..Window::default()
        };
        assert!(!counters_agree(&w).0);
        w.counts
            .calls
            .entry(Hook::VmNormalPage)
            .or_default()
            .insert(Class(0), 1);
        assert!(counters_agree(&w).0);
        w.counts.drops = 1;
        assert!(!counters_agree(&w).0);
    }

    #[test]
    fn idle_fails_on_records_while_sleeping() {
        let mut r = report();
        r.scenario = crate::scenario::Scenario::Idle;
        r.mappings.clear();
        let w = Window {
            records: vec![rec(Hook::VmNormalPage, 0, 10, 0, 0xf0)],
            ..Window::default()
        };
        let quiet = judge(KernelVersion(6, 12, crate::expect::Arch::X86_64), &r, &w)
            .into_iter()
            .find(|f| f.check == "idle/quiet")
            .unwrap();
        assert!(!quiet.ok, "{quiet:?}");
    }
}
