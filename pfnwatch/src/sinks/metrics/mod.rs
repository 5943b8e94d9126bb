//! `/metrics`: what pfnwatch knows, in Prometheus's text format, built for
//! each scrape. The kernel's per-CPU counters are read at scrape time, so a
//! counter shows exactly what the kernel counted; what user space counts
//! (records, rule hits, alerts, reloads) lives in [`Tally`], a sink of the
//! pipeline. The families are data (`families.rs`), their label values
//! come from `labels.rs`.

mod families;
mod labels;
mod tally;

pub use families::*;
pub use labels::{
    Bounded, MAX_SOURCES, OTHER, hook_call_labels, remap_outcome, result_label, vma_label,
};
pub use tally::Tally;

use crate::kernel::bpf_stats::ProgramStats;
use crate::kernel::counters::Counts;
use crate::kernel::loader::{ProgramReport, ProgramState};
use crate::kernel::lookups::LookupStats;
use crate::kernel::refusals::errno_name;
use crate::rules::{RuleId, Severity};
use anyhow::{Context, Result};
use labels::bit;
use pfnwatch_common::class::{COW, ERROR};
use pfnwatch_common::{Family, Hook, abi};
use prometheus::core::Collector;
use prometheus::{CounterVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Everything one scrape shows.
#[derive(Debug)]
pub struct Snapshot<'a> {
    pub kernel_release: &'a str,
    pub start_time: f64,
    pub counts: &'a Counts,
    pub programs: &'a [ProgramReport],
    pub program_stats: &'a [ProgramStats],
    /// kernel.bpf_stats_enabled: whether `program_stats` has runs.
    pub stats_enabled: bool,
    pub tally: &'a Tally,
    pub undecodable: u64,
    pub ringbuf_bytes: u32,
    pub lookups: LookupStats,
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
            // A 7.x remap passes remap_pfn_range_prepare, then is done by
            // remap_pfn_range_complete: one remap, counted there. A prepare
            // that refuses is the only trace of its attempt.
            let counted = *hook != Hook::RemapPfnRangePrepare || class.has(ERROR);
            if hook.family() == Family::Remap && counted {
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
                errno_name(*errno as i32)
            };
            errors
                .with_label_values(&[hook.function(), &name])
                .inc_by(*n);
        }
    }

    let available = f.gauge(&HOOK_AVAILABLE)?;
    let attached = f.gauge(&HOOK_ATTACHED)?;
    for hook in Hook::ALL {
        let mine: Vec<&ProgramReport> = s.programs.iter().filter(|p| p.hook == hook).collect();
        // A program whose function this kernel lacks (one beside the hook's,
        // like 6.12's __vm_area_free) leaves nothing to attach.
        let present: Vec<_> = mine
            .iter()
            .filter(|p| p.state != ProgramState::Missing)
            .collect();
        let has = !present.is_empty();
        let all = has && present.iter().all(|p| p.state.works());
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
    f.counter(&URGENT_DROPPED)?
        .with_label_values(none)
        .inc_by(s.counts.urgent_drops);
    f.counter(&UNDECODABLE)?
        .with_label_values(none)
        .inc_by(s.undecodable);
    f.gauge(&RINGBUF_SIZE)?
        .with_label_values(none)
        .set(i64::from(s.ringbuf_bytes));
    let l = &s.lookups;
    f.gauge(&LOOKUPS_ATTACHED)?
        .with_label_values(none)
        .set(i64::from(l.attached));
    f.gauge(&LOOKUPS_WATCHED)?
        .with_label_values(none)
        .set(i64::try_from(l.watched).unwrap_or(i64::MAX));
    f.counter(&LOOKUPS_ATTACHES)?
        .with_label_values(none)
        .inc_by(l.attaches);
    f.counter(&LOOKUPS_DETACHES)?
        .with_label_values(none)
        .inc_by(l.detaches);
    // NaN until the lookups first attach on demand.
    f.fgauge(&LOOKUPS_ATTACH_DELAY)?
        .with_label_values(none)
        .set(l.last_attach_delay.map_or(f64::NAN, |d| d.as_secs_f64()));
    f.counter(&LOOKUPS_LATE_WAKEUPS)?
        .with_label_values(none)
        .inc_by(l.late_wakeups);
    f.counter(&LOOKUPS_UNSEEN_MAPPINGS)?
        .with_label_values(none)
        .inc_by(l.unseen_mappings);

    // Every rule at every severity from zero, so the first hit is an
    // increase Prometheus can see.
    let alerts = f.counter(&ALERTS)?;
    for rule in RuleId::ALL {
        for severity in Severity::ALL {
            let n = s.tally.hits.get(&(rule, severity)).copied().unwrap_or(0);
            alerts
                .with_label_values(&[rule.as_str(), rule.name(), severity.as_str()])
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
    for ((origin, (vma, driver, device)), n) in &s.tally.mappings {
        mappings
            .with_label_values(&[origin, vma, driver.as_str(), device.as_str()])
            .inc_by(*n);
    }
    let removed = f.counter(&MAPPINGS_REMOVED)?;
    for ((vma, driver, device), n) in &s.tally.removed {
        removed
            .with_label_values(&[vma, driver.as_str(), device.as_str()])
            .inc_by(*n);
    }
    let live = f.gauge(&MAPPINGS_LIVE)?;
    let bytes = f.gauge(&MAPPED_BYTES)?;
    for ((vma, driver, device), (n, size)) in &s.tally.live {
        let labels = [*vma, driver.as_str(), device.as_str()];
        live.with_label_values(&labels)
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
        bytes
            .with_label_values(&labels)
            .set(i64::try_from(*size).unwrap_or(i64::MAX));
    }
    f.counter(&INVENTORY_FULL)?
        .with_label_values(none)
        .inc_by(s.counts.inventory_full);
    f.counter(&FREES_UNSEEN)?
        .with_label_values(none)
        .inc_by(s.counts.frees_unseen);
    f.counter(&MAPPINGS_RECONCILED)?
        .with_label_values(none)
        .inc_by(s.tally.reconciled);

    f.gauge(&STATS_ENABLED)?
        .with_label_values(none)
        .set(i64::from(s.stats_enabled));
    let count = f.counter(&PROGRAM_RUNS)?;
    let time = f.fcounter(&PROGRAM_RUN_TIME)?;
    let misses = f.counter(&PROGRAM_MISSES)?;
    for p in s.program_stats {
        let labels = [p.program.as_str(), p.hook.function()];
        if s.stats_enabled {
            count.with_label_values(&labels).inc_by(p.runs);
            time.with_label_values(&labels).inc_by(p.run_seconds);
        }
        misses.with_label_values(&labels).inc_by(p.misses);
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
    use crate::kernel::decode::DevNum;
    use crate::pipeline::Sink;
    use crate::pipeline::alert::Alert;
    use crate::rules::{Context, RuleConfig, RuleSet};
    use pfnwatch_common::Class;
    use pfnwatch_common::class::{
        ANON, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
    };
    use std::collections::BTreeMap;
    use tally::tests::{outcome, vma};

    fn programs() -> Vec<ProgramReport> {
        crate::kernel::programs::PROGRAMS
            .iter()
            .map(|p| {
                let state = match p.hook {
                    Hook::RemapPfnRangeComplete | Hook::PrintBadPageMap => ProgramState::Missing,
                    Hook::FolioWalkStart => ProgramState::Refused {
                        errno: Some(1),
                        error: "EPERM".into(),
                        hint: String::new(),
                    },
                    _ => ProgramState::Attached,
                };
                ProgramReport::new(p, |_| true, state)
            })
            .collect()
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
        let mut tally = Tally::default();
        let mem = DevNum { major: 1, minor: 1 };
        let bar = DevNum { major: 0, minor: 0 };
        // Two vmas created, one by /dev/mem's driver, one nobody names.
        let created = Hook::PerfEventMmap;
        tally
            .outcome(&outcome(vma(created, "mem", mem, PFNMAP), Some("mem")))
            .unwrap();
        tally
            .outcome(&outcome(vma(created, "0000:00:02.0", bar, PFNMAP), None))
            .unwrap();
        // A third, gone again.
        let mut short = vma(created, "mem", mem, PFNMAP);
        short.vma_id = 3;
        tally.outcome(&outcome(short, Some("mem"))).unwrap();
        let mut gone = vma(Hook::VmAreaFree, "mem", mem, PFNMAP);
        gone.vma_id = 3;
        gone.file = None;
        tally.outcome(&outcome(gone, None)).unwrap();
        // A refused remap is no mapping.
        tally
            .outcome(&outcome(
                vma(Hook::RemapPfnRange, "mem", mem, COW | ERROR),
                Some("mem"),
            ))
            .unwrap();
        // Three R1 hits: COW remaps, evaluated by the pipeline's rules.
        let rules = RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        );
        for _ in 0..3 {
            let r = vma(Hook::RemapPfnRange, "mem", mem, PFNMAP | COW);
            let mut o = outcome(r, Some("mem"));
            o.hits = rules.evaluate(&o.record);
            tally.outcome(&o).unwrap();
        }
        tally.records -= 1;
        let alert: Alert = serde_json::from_value(serde_json::json!({
            "rule": "R1", "name": "cow_pfnmap_mapping", "severity": "info",
            "time": "2026-01-01T00:00:00.000Z", "first_ns": 1, "last_ns": 2, "count": 2,
            "repeat": true, "hook": "remap_pfn_range", "class": "pfnmap+cow", "pid": 9,
            "tgid": 9, "comm": "x", "cgroup_id": 0, "driver": "mem", "vm_start": 0,
            "vm_end": 4096, "vm_flags": 0, "vm_flags_names": [], "addr": 0, "pfn": null,
            "vm_pgoff": 0, "expected_pfn": 0, "stack": [], "explanation": "",
        }))
        .unwrap();
        tally.alert(&alert).unwrap();
        let programs = programs();
        let runs = [ProgramStats {
            program: "vm_normal_page_exit".into(),
            hook: Hook::VmNormalPage,
            runs: 1000,
            run_seconds: 0.25,
            misses: 3,
        }];
        let text = render(&Snapshot {
            kernel_release: "6.12.117+deb13-amd64",
            start_time: 1.7e9,
            counts: &counts,
            programs: &programs,
            program_stats: &runs,
            stats_enabled: true,
            tally: &tally,
            undecodable: 0,
            ringbuf_bytes: 262_144,
            lookups: LookupStats::default(),
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
            get(
                r#"pfnwatch_pfn_mappings_total{device="1:1",driver="mem",origin="mmap",vma="pfnmap"}"#
            ),
            2.0,
            "the vmas created, not the remaps into them"
        );
        assert_eq!(
            get(r#"pfnwatch_pfn_mappings_removed_total{device="1:1",driver="mem",vma="pfnmap"}"#),
            1.0
        );
        assert_eq!(
            get(r#"pfnwatch_pfn_mappings{device="1:1",driver="mem",vma="pfnmap"}"#),
            1.0
        );
        assert_eq!(
            get(r#"pfnwatch_pfn_mapped_bytes{device="1:1",driver="mem",vma="pfnmap"}"#),
            16384.0
        );
        assert_eq!(
            get(
                r#"pfnwatch_pfn_mappings_total{device="0000:00:02.0",driver="unknown",origin="mmap",vma="pfnmap"}"#
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
        assert_eq!(
            get(
                r#"pfnwatch_program_misses_total{hook="vm_normal_page",program="vm_normal_page_exit"}"#
            ),
            3.0
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
    fn run_stats_are_left_out_when_the_kernel_keeps_none_and_misses_are_not() {
        let tally = Tally::default();
        // With the sysctl off the kernel leaves runs at zero but still
        // counts misses.
        let stats = [ProgramStats {
            program: "vm_area_free_entry".into(),
            hook: Hook::VmAreaFree,
            runs: 0,
            run_seconds: 0.0,
            misses: 2,
        }];
        let text = render(&Snapshot {
            kernel_release: "6.1.0-50-amd64",
            start_time: 0.0,
            counts: &Counts::default(),
            programs: &[],
            program_stats: &stats,
            stats_enabled: false,
            tally: &tally,
            undecodable: 0,
            ringbuf_bytes: 4096,
            lookups: LookupStats::default(),
        })
        .unwrap();
        assert!(text.contains("pfnwatch_bpf_stats_enabled 0\n"), "{text}");
        assert!(!text.contains("pfnwatch_program_runs_total{"), "{text}");
        assert!(
            text.contains(
                "pfnwatch_program_misses_total{hook=\"vm_area_free\",program=\"vm_area_free_entry\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("pfnwatch_config_last_reload_successful 1\n"),
            "{text}"
        );
    }
}
