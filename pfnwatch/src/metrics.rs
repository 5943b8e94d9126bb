//! `/metrics`: what pfnwatch knows, in Prometheus's text format, built for
//! each scrape. The kernel's per-CPU counters are read at scrape time, so a
//! counter shows exactly what the kernel counted; what user space counts
//! (records, alerts, reloads) lives in [`Tally`] and the pipeline.
//!
//! Labels come from fixed sets (hooks, class bits, rules, errno names),
//! except driver and device, which are bounded: the first [`MAX_SOURCES`]
//! seen keep their own series, later ones count under `other`.

use crate::alert::Alert;
use crate::counters::Counts;
use crate::errors;
use crate::loader::{ProgramReport, ProgramState};
use crate::record::Record;
use crate::rules::{self, Severity};
use anyhow::{Context, Result};
use pfnwatch_common::class::{
    ANON, COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
};
use pfnwatch_common::{Class, Hook, abi};
use prometheus::core::Collector;
use prometheus::{CounterVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::{BTreeMap, BTreeSet};

/// Distinct driver (or driver and device) label values before `other`.
pub const MAX_SOURCES: usize = 16;
/// The label value for everything past [`MAX_SOURCES`].
pub const OTHER: &str = "other";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its name, HELP text and labels.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

const fn counter(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Spec {
    Spec {
        name,
        help,
        kind: Kind::Counter,
        labels,
    }
}

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Spec {
    Spec {
        name,
        help,
        kind: Kind::Gauge,
        labels,
    }
}

pub const BUILD_INFO: Spec = gauge(
    "pfnwatch_build_info",
    "pfnwatch's version, and the kernel release and architecture it runs on (always 1).",
    &["version", "kernel_release", "arch"],
);
pub const START_TIME: Spec = gauge(
    "pfnwatch_start_time_seconds",
    "When the daemon started, in seconds since the Unix epoch.",
    &[],
);
pub const HOOK_CALLS: Spec = counter(
    "pfnwatch_hook_calls_total",
    "Calls of a hooked kernel function on a VM_PFNMAP/VM_MIXEDMAP vma, as the kernel \
     programs counted them, by hook and the call's class: vma kind, COW mapping, pte \
     special bit, pfn == vm_pgoff + offset, and result.",
    &["hook", "vma", "cow", "special", "pfn_match", "result"],
);
pub const HOOK_ERRORS: Spec = counter(
    "pfnwatch_hook_errors_total",
    "Failed calls of a hooked kernel function, by errno (larger errnos count as other).",
    &["hook", "errno"],
);
pub const REMAP_CALLS: Spec = counter(
    "pfnwatch_remap_calls_total",
    "remap_pfn_range() and remap_pfn_range_complete() calls by outcome: the whole vma \
     mapped, part of it, or an error.",
    &["hook", "outcome", "cow"],
);
pub const HOOK_AVAILABLE: Spec = gauge(
    "pfnwatch_hook_available",
    "1 when the running kernel has the hook's function (in its BTF), 0 when it has not.",
    &["hook"],
);
pub const HOOK_ATTACHED: Spec = gauge(
    "pfnwatch_hook_attached",
    "1 when every program of the hook is attached, 0 when one is missing or refused.",
    &["hook"],
);
pub const RECORDS: Spec = counter(
    "pfnwatch_ringbuf_records_total",
    "Detail records read from the kernel's ring buffer.",
    &[],
);
pub const DROPPED: Spec = counter(
    "pfnwatch_ringbuf_records_dropped_total",
    "Detail records the kernel programs could not send because the ring buffer was full \
     (counted in the kernel).",
    &[],
);
pub const UNDECODABLE: Spec = counter(
    "pfnwatch_ringbuf_records_undecodable_total",
    "Records whose layout this binary does not know (binary and kernel object disagree).",
    &[],
);
pub const RINGBUF_SIZE: Spec = gauge(
    "pfnwatch_ringbuf_size_bytes",
    "Size of the ring buffer the kernel programs write records into.",
    &[],
);
pub const ALERTS: Spec = counter(
    "pfnwatch_alerts_total",
    "Rule hits, by rule and severity, before duplicate collapsing.",
    &["rule", "name", "severity"],
);
pub const ALERTS_BY_DRIVER: Spec = counter(
    "pfnwatch_alerts_by_driver_total",
    "Rule hits by rule and the driver behind the mapping (bounded: later drivers count \
     as other; unknown when none could be named), counted when the alert is written.",
    &["rule", "driver"],
);
pub const MAPPINGS: Spec = counter(
    "pfnwatch_pfn_mappings_total",
    "Successful remaps (pfn mappings created) by hook, driver and device (bounded: later \
     ones count as other).",
    &["hook", "driver", "device"],
);
pub const STATS_ENABLED: Spec = gauge(
    "pfnwatch_bpf_stats_enabled",
    "1 when kernel.bpf_stats_enabled is on and the programs' run counts and times are kept.",
    &[],
);
pub const PROGRAM_RUNS: Spec = counter(
    "pfnwatch_program_runs_total",
    "Runs of each kernel program while kernel.bpf_stats_enabled was on.",
    &["program", "hook"],
);
pub const PROGRAM_RUN_TIME: Spec = counter(
    "pfnwatch_program_run_seconds_total",
    "Time spent in each kernel program while kernel.bpf_stats_enabled was on.",
    &["program", "hook"],
);
pub const RELOADS: Spec = counter(
    "pfnwatch_config_reloads_total",
    "Configuration reloads (SIGHUP) by result.",
    &["result"],
);
pub const LAST_RELOAD_OK: Spec = gauge(
    "pfnwatch_config_last_reload_successful",
    "1 when the last configuration reload (or the start) succeeded.",
    &[],
);
pub const RESTART_REQUIRED: Spec = gauge(
    "pfnwatch_config_restart_required",
    "1 when the configuration file asks for something only a restart applies \
     (BTF path, ring buffer size, a rule that was off at start).",
    &[],
);

/// Every family pfnwatch exports (deploy/ files are checked against it).
pub const ALL: &[&Spec] = &[
    &BUILD_INFO,
    &START_TIME,
    &HOOK_CALLS,
    &HOOK_ERRORS,
    &REMAP_CALLS,
    &HOOK_AVAILABLE,
    &HOOK_ATTACHED,
    &RECORDS,
    &DROPPED,
    &UNDECODABLE,
    &RINGBUF_SIZE,
    &ALERTS,
    &ALERTS_BY_DRIVER,
    &MAPPINGS,
    &STATS_ENABLED,
    &PROGRAM_RUNS,
    &PROGRAM_RUN_TIME,
    &RELOADS,
    &LAST_RELOAD_OK,
    &RESTART_REQUIRED,
];

/// The `vma` label: which of VM_PFNMAP and VM_MIXEDMAP the vma has.
pub fn vma_label(class: Class) -> &'static str {
    match (class.has(PFNMAP), class.has(MIXEDMAP)) {
        (true, true) => "pfnmap+mixedmap",
        (true, false) => "pfnmap",
        (false, true) => "mixedmap",
        (false, false) => "none",
    }
}

/// The `result` label: what the hooked function did.
pub fn result_label(hook: Hook, class: Class) -> &'static str {
    if hook.reports_bad_map() {
        "reported"
    } else if class.has(ERROR) {
        "error"
    } else if hook.maps_pfns() {
        "ok"
    } else if class.has(NO_PAGE) {
        "no_page"
    } else if class.has(ANON) {
        "anon_page"
    } else {
        "page"
    }
}

/// The `outcome` label of a remap.
pub fn remap_outcome(class: Class) -> &'static str {
    if class.has(ERROR) {
        "error"
    } else if class.has(PARTIAL) {
        "partial"
    } else {
        "whole"
    }
}

fn bit(class: Class, mask: u16) -> &'static str {
    if class.has(mask) { "true" } else { "false" }
}

/// The `hook_calls` labels of one (hook, class) counter slot.
pub fn hook_call_labels(hook: Hook, class: Class) -> [&'static str; 6] {
    [
        hook.function(),
        vma_label(class),
        bit(class, COW),
        bit(class, SPECIAL),
        bit(class, PFN_MATCH),
        result_label(hook, class),
    ]
}

/// A label dimension that admits its first `limit` values and maps the
/// rest to [`OTHER`]. First come, first kept: a value never moves to
/// another series, so each series only grows.
#[derive(Debug)]
pub struct Bounded<K: Ord> {
    limit: usize,
    kept: BTreeSet<K>,
}

impl<K: Ord + Clone> Bounded<K> {
    pub fn new(limit: usize) -> Bounded<K> {
        Bounded {
            limit,
            kept: BTreeSet::new(),
        }
    }

    /// `Some(value)` while it has its own series, `None` for other.
    pub fn admit(&mut self, value: &K) -> Option<K> {
        if self.kept.contains(value) || self.kept.len() < self.limit {
            self.kept.insert(value.clone());
            return Some(value.clone());
        }
        None
    }
}

/// What the daemon counts in user space, kept across reloads.
#[derive(Debug)]
pub struct Tally {
    pub records: u64,
    mappings: BTreeMap<(Hook, String, String), u64>,
    alerts_by_driver: BTreeMap<(String, String), u64>,
    sources: Bounded<(String, String)>,
    drivers: Bounded<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_ok: bool,
    pub restart_required: bool,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            records: 0,
            mappings: BTreeMap::new(),
            alerts_by_driver: BTreeMap::new(),
            sources: Bounded::new(MAX_SOURCES),
            drivers: Bounded::new(MAX_SOURCES),
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_ok: true,
            restart_required: false,
        }
    }
}

impl Tally {
    /// One record read from the ring buffer; `driver` names the driver
    /// behind its file, when one can be named.
    pub fn record(&mut self, r: &Record, driver: Option<&str>) {
        self.records += 1;
        let created = matches!(r.hook, Hook::RemapPfnRange | Hook::RemapPfnRangeComplete)
            && !r.class.has(ERROR);
        if !created {
            return;
        }
        let device = match &r.file {
            None => "none".to_owned(),
            Some(f) if f.rdev.major != 0 || f.rdev.minor != 0 => f.rdev.to_string(),
            // A PCI BAR file's directory is its device's address.
            Some(f) if f.name.starts_with("resource") => f.parent.clone(),
            Some(f) => f.name.clone(),
        };
        let source = (driver.unwrap_or("unknown").to_owned(), device);
        let (driver, device) = self
            .sources
            .admit(&source)
            .unwrap_or_else(|| (OTHER.to_owned(), OTHER.to_owned()));
        *self.mappings.entry((r.hook, driver, device)).or_default() += 1;
    }

    /// One alert written by the sinks (a follow-up stands for `count` hits).
    pub fn alert(&mut self, a: &Alert) {
        let driver = a.driver.clone().unwrap_or_else(|| "unknown".to_owned());
        let driver = self
            .drivers
            .admit(&driver)
            .unwrap_or_else(|| OTHER.to_owned());
        *self
            .alerts_by_driver
            .entry((a.rule.clone(), driver))
            .or_default() += a.count;
    }
}

/// One kernel program's run count and time (kernel.bpf_stats_enabled).
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramRuns {
    pub program: String,
    pub hook: Hook,
    pub runs: u64,
    pub run_seconds: f64,
}

/// Everything one scrape shows.
#[derive(Debug)]
pub struct Snapshot<'a> {
    pub kernel_release: &'a str,
    pub start_time: f64,
    pub counts: &'a Counts,
    pub programs: &'a [ProgramReport],
    /// None when kernel.bpf_stats_enabled is off.
    pub program_runs: Option<&'a [ProgramRuns]>,
    /// The pipeline's rule hits per (rule id, severity).
    pub alerts: &'a BTreeMap<(String, String), u64>,
    pub tally: &'a Tally,
    pub undecodable: u64,
    pub ringbuf_bytes: u32,
}

/// The `/metrics` body.
pub fn render(s: &Snapshot<'_>) -> Result<String> {
    let registry = Registry::new();
    let f = Families(&registry);

    f.gauge(&BUILD_INFO)?
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            s.kernel_release,
            std::env::consts::ARCH,
        ])
        .set(1);
    f.fgauge(&START_TIME)?
        .with_label_values(&[] as &[&str])
        .set(s.start_time);

    let calls = f.counter(&HOOK_CALLS)?;
    let remaps = f.counter(&REMAP_CALLS)?;
    for (hook, classes) in &s.counts.calls {
        for (class, n) in classes {
            calls
                .with_label_values(&hook_call_labels(*hook, *class))
                .inc_by(*n);
            if matches!(hook, Hook::RemapPfnRange | Hook::RemapPfnRangeComplete) {
                remaps
                    .with_label_values(&[hook.function(), remap_outcome(*class), bit(*class, COW)])
                    .inc_by(*n);
            }
        }
    }
    let errors = f.counter(&HOOK_ERRORS)?;
    for (hook, by_errno) in &s.counts.errors {
        for (errno, n) in by_errno {
            let name = if *errno as usize >= abi::ERRNO_SLOTS - 1 {
                OTHER.to_owned()
            } else {
                errors::errno_name(*errno as i32)
            };
            errors
                .with_label_values(&[hook.function(), &name])
                .inc_by(*n);
        }
    }

    let available = f.gauge(&HOOK_AVAILABLE)?;
    let attached = f.gauge(&HOOK_ATTACHED)?;
    for hook in Hook::ALL {
        let mine: Vec<&ProgramReport> = s
            .programs
            .iter()
            .filter(|p| p.hook() == Some(hook))
            .collect();
        let has = mine.iter().any(|p| p.state != ProgramState::Missing);
        let all = !mine.is_empty() && mine.iter().all(|p| p.state == ProgramState::Attached);
        available
            .with_label_values(&[hook.function()])
            .set(i64::from(has));
        attached
            .with_label_values(&[hook.function()])
            .set(i64::from(all));
    }

    let none: &[&str] = &[];
    f.counter(&RECORDS)?
        .with_label_values(none)
        .inc_by(s.tally.records);
    f.counter(&DROPPED)?
        .with_label_values(none)
        .inc_by(s.counts.drops);
    f.counter(&UNDECODABLE)?
        .with_label_values(none)
        .inc_by(s.undecodable);
    f.gauge(&RINGBUF_SIZE)?
        .with_label_values(none)
        .set(i64::from(s.ringbuf_bytes));

    // Every rule at every severity from zero, so the first hit is an
    // increase Prometheus can see.
    let alerts = f.counter(&ALERTS)?;
    for rule in rules::RULES {
        for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
            let n = s
                .alerts
                .get(&(rule.id.to_owned(), severity.to_string()))
                .copied()
                .unwrap_or(0);
            alerts
                .with_label_values(&[rule.id, rule.name, severity.as_str()])
                .inc_by(n);
        }
    }
    let by_driver = f.counter(&ALERTS_BY_DRIVER)?;
    for ((rule, driver), n) in &s.tally.alerts_by_driver {
        by_driver
            .with_label_values(&[rule.as_str(), driver.as_str()])
            .inc_by(*n);
    }
    let mappings = f.counter(&MAPPINGS)?;
    for ((hook, driver, device), n) in &s.tally.mappings {
        mappings
            .with_label_values(&[hook.function(), driver.as_str(), device.as_str()])
            .inc_by(*n);
    }

    f.gauge(&STATS_ENABLED)?
        .with_label_values(none)
        .set(i64::from(s.program_runs.is_some()));
    if let Some(runs) = s.program_runs {
        let count = f.counter(&PROGRAM_RUNS)?;
        let time = f.fcounter(&PROGRAM_RUN_TIME)?;
        for p in runs {
            let labels = [p.program.as_str(), p.hook.function()];
            count.with_label_values(&labels).inc_by(p.runs);
            time.with_label_values(&labels).inc_by(p.run_seconds);
        }
    }

    let reloads = f.counter(&RELOADS)?;
    reloads
        .with_label_values(&["success"])
        .inc_by(s.tally.reloads_ok);
    reloads
        .with_label_values(&["failure"])
        .inc_by(s.tally.reloads_failed);
    f.gauge(&LAST_RELOAD_OK)?
        .with_label_values(none)
        .set(i64::from(s.tally.last_reload_ok));
    f.gauge(&RESTART_REQUIRED)?
        .with_label_values(none)
        .set(i64::from(s.tally.restart_required));

    let mut out = String::new();
    TextEncoder::new()
        .encode_utf8(&registry.gather(), &mut out)
        .context("encoding the metrics")?;
    Ok(out)
}

/// Creates and registers the family a [`Spec`] describes.
struct Families<'r>(&'r Registry);

impl Families<'_> {
    fn opts(spec: &Spec) -> Opts {
        Opts::new(spec.name, spec.help)
    }

    fn add<C: Collector + Clone + 'static>(
        &self,
        spec: &Spec,
        c: prometheus::Result<C>,
    ) -> Result<C> {
        let c = c.with_context(|| format!("defining {}", spec.name))?;
        self.0
            .register(Box::new(c.clone()))
            .with_context(|| format!("registering {}", spec.name))?;
        Ok(c)
    }

    fn counter(&self, spec: &Spec) -> Result<IntCounterVec> {
        debug_assert_eq!(spec.kind, Kind::Counter);
        self.add(spec, IntCounterVec::new(Self::opts(spec), spec.labels))
    }

    fn fcounter(&self, spec: &Spec) -> Result<CounterVec> {
        debug_assert_eq!(spec.kind, Kind::Counter);
        self.add(spec, CounterVec::new(Self::opts(spec), spec.labels))
    }

    fn gauge(&self, spec: &Spec) -> Result<IntGaugeVec> {
        debug_assert_eq!(spec.kind, Kind::Gauge);
        self.add(spec, IntGaugeVec::new(Self::opts(spec), spec.labels))
    }

    fn fgauge(&self, spec: &Spec) -> Result<prometheus::GaugeVec> {
        debug_assert_eq!(spec.kind, Kind::Gauge);
        self.add(
            spec,
            prometheus::GaugeVec::new(Self::opts(spec), spec.labels),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{DevNum, MappedFile};

    fn programs() -> Vec<ProgramReport> {
        crate::programs::PROGRAMS
            .iter()
            .map(|p| ProgramReport {
                program: p.name.to_owned(),
                attach: p.attach.section_prefix().to_owned(),
                function: p.target().to_owned(),
                state: match p.hook {
                    Hook::RemapPfnRangeComplete | Hook::PrintBadPageMap => ProgramState::Missing,
                    Hook::FolioWalkStart => ProgramState::Refused {
                        errno: Some(1),
                        error: "EPERM".into(),
                        hint: String::new(),
                    },
                    _ => ProgramState::Attached,
                },
            })
            .collect()
    }

    fn remap(parent: &str, rdev: DevNum, class: u16) -> Record {
        Record {
            ts_ns: 1,
            hook: Hook::RemapPfnRange,
            class: Class(class),
            pid: 9,
            tgid: 9,
            comm: "x".into(),
            cgroup_id: 0,
            vm_flags: 0,
            vm_start: 0,
            vm_end: 0x4000,
            vm_pgoff: 0,
            pgoff_before: None,
            addr: 0,
            pfn: None,
            size: 0x4000,
            entry: 0,
            ret: 0,
            level: 0,
            file: Some(MappedFile {
                name: "resource0".into(),
                parent: parent.into(),
                ino: 1,
                rdev,
                sdev: DevNum { major: 0, minor: 5 },
            }),
            stack: Vec::new(),
        }
    }

    /// name{labels} -> value, from the text format.
    fn samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k.to_owned(), v.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn renders_kernel_counts_by_class_labels_and_sums_what_labels_merge() {
        let mut counts = Counts::default();
        let dev = PFNMAP | SPECIAL | PFN_MATCH | NO_PAGE;
        let vm = counts.calls.entry(Hook::VmNormalPage).or_default();
        vm.insert(Class(dev), 4);
        vm.insert(Class(dev | COW), 9);
        vm.insert(Class(PFNMAP | COW | ANON), 3);
        vm.insert(Class(MIXEDMAP), 2);
        let rm = counts.calls.entry(Hook::RemapPfnRange).or_default();
        rm.insert(Class(PFNMAP | PFN_MATCH), 1);
        rm.insert(Class(PFNMAP), 1);
        rm.insert(Class(COW | PARTIAL | ERROR), 2);
        counts
            .errors
            .entry(Hook::RemapPfnRange)
            .or_default()
            .insert(22, 2);
        counts
            .errors
            .entry(Hook::RemapPfnRange)
            .or_default()
            .insert(63, 1);
        counts.drops = 5;
        let mut alerts = BTreeMap::new();
        alerts.insert(("R1".to_owned(), "info".to_owned()), 3);
        let mut tally = Tally {
            records: 7,
            ..Tally::default()
        };
        tally.record(
            &remap("mem", DevNum { major: 1, minor: 1 }, PFNMAP),
            Some("mem"),
        );
        tally.record(
            &remap("0000:00:02.0", DevNum { major: 0, minor: 0 }, PFNMAP),
            None,
        );
        tally.record(
            &remap("mem", DevNum { major: 1, minor: 1 }, COW | ERROR),
            Some("mem"),
        );
        tally.records -= 3;
        let alert: Alert = serde_json::from_value(serde_json::json!({
            "rule": "R1", "name": "cow_pfnmap_mapping", "severity": "info",
            "time": "2026-01-01T00:00:00.000Z", "first_ns": 1, "last_ns": 2, "count": 2,
            "repeat": true, "hook": "remap_pfn_range", "class": "pfnmap+cow", "pid": 9,
            "tgid": 9, "comm": "x", "cgroup_id": 0, "driver": "mem", "vm_start": 0,
            "vm_end": 4096, "vm_flags": 0, "vm_flags_names": [], "addr": 0, "pfn": null,
            "vm_pgoff": 0, "expected_pfn": 0, "stack": [], "explanation": "",
        }))
        .unwrap();
        tally.alert(&alert);
        let programs = programs();
        let runs = [ProgramRuns {
            program: "vm_normal_page_exit".into(),
            hook: Hook::VmNormalPage,
            runs: 1000,
            run_seconds: 0.25,
        }];
        let text = render(&Snapshot {
            kernel_release: "6.12.117+deb13-amd64",
            start_time: 1.7e9,
            counts: &counts,
            programs: &programs,
            program_runs: Some(&runs),
            alerts: &alerts,
            tally: &tally,
            undecodable: 0,
            ringbuf_bytes: 262_144,
        })
        .unwrap();
        let s = samples(&text);
        let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
        assert_eq!(
            get(
                r#"pfnwatch_hook_calls_total{cow="false",hook="vm_normal_page",pfn_match="true",result="no_page",special="true",vma="pfnmap"}"#
            ),
            4.0
        );
        assert_eq!(
            get(
                r#"pfnwatch_hook_calls_total{cow="true",hook="vm_normal_page",pfn_match="false",result="anon_page",special="false",vma="pfnmap"}"#
            ),
            3.0
        );
        assert_eq!(
            get(
                r#"pfnwatch_hook_calls_total{cow="false",hook="vm_normal_page",pfn_match="false",result="page",special="false",vma="mixedmap"}"#
            ),
            2.0
        );
        assert_eq!(
            get(
                r#"pfnwatch_remap_calls_total{cow="false",hook="remap_pfn_range",outcome="whole"}"#
            ),
            2.0,
            "PFN_MATCH is not a label of remap_calls: both whole remaps add up"
        );
        assert_eq!(
            get(r#"pfnwatch_remap_calls_total{cow="true",hook="remap_pfn_range",outcome="error"}"#),
            2.0
        );
        assert_eq!(
            get(r#"pfnwatch_hook_errors_total{errno="EINVAL",hook="remap_pfn_range"}"#),
            2.0
        );
        assert_eq!(
            get(r#"pfnwatch_hook_errors_total{errno="other",hook="remap_pfn_range"}"#),
            1.0
        );
        assert_eq!(get("pfnwatch_ringbuf_records_dropped_total"), 5.0);
        assert_eq!(get("pfnwatch_ringbuf_records_total"), 7.0);
        assert_eq!(get("pfnwatch_ringbuf_size_bytes"), 262_144.0);
        assert_eq!(get(r#"pfnwatch_hook_attached{hook="vm_normal_page"}"#), 1.0);
        assert_eq!(
            get(r#"pfnwatch_hook_available{hook="folio_walk_start"}"#),
            1.0
        );
        assert_eq!(
            get(r#"pfnwatch_hook_attached{hook="folio_walk_start"}"#),
            0.0,
            "refused"
        );
        assert_eq!(
            get(r#"pfnwatch_hook_available{hook="print_bad_page_map"}"#),
            0.0
        );
        assert_eq!(
            get(r#"pfnwatch_alerts_total{name="cow_pfnmap_mapping",rule="R1",severity="info"}"#),
            3.0
        );
        assert_eq!(
            get(
                r#"pfnwatch_alerts_total{name="kernel_bad_page_map",rule="R9",severity="critical"}"#
            ),
            0.0
        );
        assert_eq!(
            get(r#"pfnwatch_pfn_mappings_total{device="1:1",driver="mem",hook="remap_pfn_range"}"#),
            1.0,
            "the failed remap created nothing"
        );
        assert_eq!(
            get(
                r#"pfnwatch_pfn_mappings_total{device="0000:00:02.0",driver="unknown",hook="remap_pfn_range"}"#
            ),
            1.0
        );
        assert_eq!(
            get(
                r#"pfnwatch_program_runs_total{hook="vm_normal_page",program="vm_normal_page_exit"}"#
            ),
            1000.0
        );
        assert_eq!(
            get(
                r#"pfnwatch_program_run_seconds_total{hook="vm_normal_page",program="vm_normal_page_exit"}"#
            ),
            0.25
        );
        assert_eq!(get("pfnwatch_bpf_stats_enabled"), 1.0);
        assert_eq!(
            get(&format!(
                r#"pfnwatch_build_info{{arch="{}",kernel_release="6.12.117+deb13-amd64",version="{}"}}"#,
                std::env::consts::ARCH,
                env!("CARGO_PKG_VERSION")
            )),
            1.0
        );
        assert_eq!(
            get(r#"pfnwatch_alerts_by_driver_total{driver="mem",rule="R1"}"#),
            2.0
        );
        assert_eq!(
            get(r#"pfnwatch_config_reloads_total{result="failure"}"#),
            0.0
        );
        // Every family has HELP and TYPE.
        for spec in ALL {
            assert!(
                text.contains(&format!("# HELP {} ", spec.name)),
                "{}",
                spec.name
            );
            let kind = match spec.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            assert!(
                text.contains(&format!("# TYPE {} {kind}\n", spec.name)),
                "{}",
                spec.name
            );
        }
    }

    #[test]
    fn run_stats_are_left_out_when_the_kernel_keeps_none() {
        let tally = Tally::default();
        let text = render(&Snapshot {
            kernel_release: "6.1.0-50-amd64",
            start_time: 0.0,
            counts: &Counts::default(),
            programs: &[],
            program_runs: None,
            alerts: &BTreeMap::new(),
            tally: &tally,
            undecodable: 0,
            ringbuf_bytes: 4096,
        })
        .unwrap();
        assert!(text.contains("pfnwatch_bpf_stats_enabled 0\n"), "{text}");
        assert!(!text.contains("pfnwatch_program_runs_total{"), "{text}");
        assert!(
            text.contains("pfnwatch_config_last_reload_successful 1\n"),
            "{text}"
        );
    }

    #[test]
    fn labels_follow_the_class_bits() {
        assert_eq!(
            result_label(Hook::VmNormalPage, Class(PFNMAP | NO_PAGE)),
            "no_page"
        );
        assert_eq!(
            result_label(Hook::FolioWalkStart, Class(PFNMAP | COW | ANON)),
            "anon_page"
        );
        assert_eq!(result_label(Hook::VmNormalPage, Class(MIXEDMAP)), "page");
        assert_eq!(result_label(Hook::RemapPfnRange, Class(PFNMAP)), "ok");
        assert_eq!(
            result_label(Hook::VmfInsertMixed, Class(MIXEDMAP | ERROR)),
            "error"
        );
        assert_eq!(result_label(Hook::PrintBadPte, Class(PFNMAP)), "reported");
        assert_eq!(vma_label(Class(PFNMAP | MIXEDMAP)), "pfnmap+mixedmap");
        assert_eq!(vma_label(Class(COW | PARTIAL | ERROR)), "none");
        assert_eq!(remap_outcome(Class(COW | PARTIAL | ERROR)), "error");
        assert_eq!(remap_outcome(Class(PFNMAP | PARTIAL)), "partial");
        assert_eq!(remap_outcome(Class(PFNMAP | COW)), "whole");
    }

    #[test]
    fn sources_past_the_limit_count_as_other_and_keep_their_series() {
        let mut tally = Tally::default();
        for minor in 0..(MAX_SOURCES as u32 + 3) {
            tally.record(
                &remap("x", DevNum { major: 10, minor }, PFNMAP),
                Some("misc"),
            );
        }
        // An early source seen again keeps its own series.
        tally.record(
            &remap(
                "x",
                DevNum {
                    major: 10,
                    minor: 0,
                },
                PFNMAP,
            ),
            Some("misc"),
        );
        let own: u64 = tally
            .mappings
            .iter()
            .filter(|((_, d, _), _)| d != OTHER)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(own, MAX_SOURCES as u64 + 1);
        assert_eq!(
            tally.mappings[&(Hook::RemapPfnRange, OTHER.to_owned(), OTHER.to_owned())],
            3
        );
        assert_eq!(
            tally.mappings[&(Hook::RemapPfnRange, "misc".to_owned(), "10:0".to_owned())],
            2
        );
    }
}
