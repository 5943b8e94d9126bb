//! `pfnwatch replay FILE`: a capture through the same pipeline and views
//! as the live view, on any machine, without a kernel.

use crate::pipeline::alert::Clock;
use crate::pipeline::{self, Hosts, Pipeline, Sink};
use crate::rules::{Context, RuleConfig, RuleSet};
use crate::sinks::alerts_file::AlertsFile;
use crate::views::capture::{self, Capture, Entry};
use crate::views::line::{FORMAT_VERSION, Line, Source};
use crate::views::summary::Summary;
use crate::views::{View, ViewOptions};
use anyhow::Result;
use std::io::Write;
use std::path::Path;

/// Replays `path` into `out`. The whole file is read and checked first,
/// so a damaged capture prints nothing but the error.
pub fn replay(
    path: &Path,
    config: RuleConfig,
    opts: ViewOptions,
    out: impl Write,
) -> Result<Summary> {
    replay_capture(capture::read(path)?, config, opts, out)
}

/// [`replay`] of a capture already read and checked: the file's part left
/// out, so the fuzz targets (`fuzz/`) can replay hostile captures from
/// memory through the same pipeline and views.
pub fn replay_capture(
    cap: Capture,
    config: RuleConfig,
    opts: ViewOptions,
    out: impl Write,
) -> Result<Summary> {
    // The rules judge the capture host: its architecture, its clock.
    let rules = RuleSet::new(
        config,
        Context {
            arch_pte_special: cap.header.pte_special,
        },
    );
    let clock = Clock::with_offset(i128::from(cap.header.clock_offset_ns));
    let mut alerts_file = AlertsFile::open(opts.alerts_file.as_deref())?;
    let mut view = View::new(out, &opts, clock);
    let mut pipeline = Pipeline::new(rules, opts.filter, Hosts::Given, opts.dedup_window, clock);
    view.ready(Line::Ready {
        version: FORMAT_VERSION,
        source: Source::Replay,
        release: cap.header.kernel.clone(),
        programs: cap.header.programs.clone(),
        recorded_at: Some(cap.header.recorded_at.clone()),
    })?;
    for entry in cap.entries {
        if view.done() {
            break;
        }
        let mut sinks: [&mut dyn Sink; 2] = [&mut alerts_file, &mut view];
        match entry {
            Entry::Record { record, host } => {
                pipeline.feed(*record, Some(host), &mut sinks)?;
            }
            Entry::Lost { lost, total } => pipeline::lost(&mut sinks, lost, total)?,
            Entry::Counts { counts } => pipeline::counts(&mut sinks, &counts)?,
            // capture::read keeps the end line out of the entries.
            Entry::End { .. } => break,
        }
    }
    pipeline.finish(&mut [&mut alerts_file, &mut view])?;
    view.finish(pipeline.filtered)
}

#[cfg(test)]
mod tests {
    //! Replays of synthetic captures: every rule, every output mode, and
    //! files that must be refused.

    use super::*;
    use crate::enrich::Enrichment;
    use crate::kernel::decode::Record;
    use crate::pipeline::filter::{DeviceMatch, Filter};
    use crate::rules::{RuleId, Severity};
    use crate::views::capture::tests::header;
    use crate::views::line::Format;
    use pfnwatch_common::class::{
        COW, ERROR, MIXEDMAP, NO_PAGE, PARTIAL, PFN_MATCH, PFNMAP, SPECIAL,
    };
    use pfnwatch_common::{Class, Hook, vm_flags};
    use std::path::PathBuf;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    fn rec(ts: u64, tgid: u32, hook: Hook, class: u16) -> Record {
        let mut flags = vm_flags::VM_IO | vm_flags::VM_MAYWRITE;
        if class & PFNMAP != 0 {
            flags |= vm_flags::VM_PFNMAP;
        }
        if class & MIXEDMAP != 0 {
            flags |= vm_flags::VM_MIXEDMAP;
        }
        if class & COW == 0 {
            flags |= vm_flags::VM_SHARED;
        }
        Record {
            ts_ns: ts,
            pid: tgid,
            tgid,
            comm: format!("proc{tgid}"),
            cgroup_id: 1,
            vm_flags: flags,
            vm_start: 0x7f00_0000_0000,
            vm_end: 0x7f00_0000_4000,
            vm_pgoff: 0xf0,
            pgoff_before: hook.family().maps_pfns().then_some(0xf0),
            addr: 0x7f00_0000_1000,
            pfn: Some(if class & PFN_MATCH != 0 {
                0xf1
            } else {
                0x3_8ea1
            }),
            size: 0x1000,
            ret: i64::from(class & NO_PAGE == 0),
            file: Some(crate::kernel::decode::test_file("mem", "/", (1, 1))),
            stack: vec![0xffff_ffff_8100_0010],
            ..Record::new(hook, Class(class))
        }
    }

    /// One record per rule R1..R9 (in order), one that breaks none, and a
    /// repeat of R7 inside the duplicate window.
    fn every_rule() -> Vec<Record> {
        let cases = [
            (Hook::RemapPfnRange, PFNMAP | COW | PFN_MATCH),
            (Hook::VmfInsertPfnProt, PFNMAP | COW),
            (Hook::RemapPfnRange, COW | PARTIAL | ERROR),
            (Hook::VmfInsertMixed, MIXEDMAP),
            (Hook::FolioWalkStart, PFNMAP | SPECIAL | PFN_MATCH),
            (Hook::VmNormalPagePmd, PFNMAP | SPECIAL),
            (Hook::VmNormalPage, PFNMAP | SPECIAL_LESS_MATCH),
            (Hook::VmNormalPage, PFNMAP | COW | SPECIAL | NO_PAGE),
            (Hook::PrintBadPageMap, PFNMAP | NO_PAGE),
            (Hook::VmNormalPage, PFNMAP | SPECIAL | PFN_MATCH | NO_PAGE),
            (Hook::VmNormalPage, PFNMAP | SPECIAL_LESS_MATCH),
        ];
        cases
            .iter()
            .enumerate()
            .map(|(i, (hook, class))| rec(S * (i as u64 + 1), 100 + i as u32, *hook, *class))
            .map(|mut r| {
                // R2: seen at fentry, the kernel about to BUG().
                r.at_entry = r.hook == Hook::VmfInsertPfnProt;
                // The R7 repeat: same process as the first R7.
                if r.ts_ns == 11 * S {
                    r.tgid = 106;
                    r.pid = 106;
                    r.comm = "proc106".into();
                }
                r
            })
            .collect()
    }

    /// R7 alone: a pte in a shared PFNMAP that is not special yet whose
    /// page is NULL (so R6, which wants a page, stays quiet).
    const SPECIAL_LESS_MATCH: u16 = PFN_MATCH | NO_PAGE;

    fn write_capture(name: &str, records: &[Record], tail: &[Entry]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pfnwatch-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut w = capture::Writer::create(&path).unwrap();
        w.header(&header()).unwrap();
        for r in records {
            let host = Enrichment {
                driver: Some("mem".into()),
                cgroup: Some("/system.slice/x.service".into()),
                container: None,
                handlers: None,
                stack: vec!["bpf_trampoline_1+0x5".into(), "zap_pte_range+0x1f0".into()],
            };
            w.record(r, &host).unwrap();
        }
        for e in tail {
            w.entry(e).unwrap();
        }
        w.finish().unwrap();
        path
    }

    fn opts(format: Format) -> ViewOptions {
        ViewOptions {
            format,
            stack: false,
            filter: Filter::default(),
            count: None,
            dedup_window: Duration::from_secs(10),
            alerts_file: None,
        }
    }

    fn run(path: &Path, view: ViewOptions) -> (Summary, String) {
        let mut out = Vec::new();
        let summary = replay(path, RuleConfig::default(), view, &mut out).unwrap();
        (summary, String::from_utf8(out).unwrap())
    }

    fn json_lines(text: &str) -> Vec<Line> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    #[test]
    fn every_rule_fires_once_on_replay() {
        let path = write_capture("rules", &every_rule(), &[]);
        let (summary, text) = run(&path, opts(Format::Json));
        let lines = json_lines(&text);
        let Line::Ready {
            source, release, ..
        } = &lines[0]
        else {
            panic!("{:?}", lines[0]);
        };
        assert_eq!(
            (*source, release.as_str()),
            (Source::Replay, "6.12.117+deb13-amd64")
        );
        let records: Vec<Vec<RuleId>> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Record { rules, .. } => Some(rules.clone()),
                _ => None,
            })
            .collect();
        let want: Vec<Vec<RuleId>> = RuleId::ALL
            .iter()
            .map(|id| vec![*id])
            .chain([vec![], vec![RuleId::R7]])
            .collect();
        assert_eq!(records, want);
        for rule in RuleId::ALL {
            assert!(summary.rules.contains_key(&rule), "{rule} never fired");
        }
        assert_eq!(summary.rules[&RuleId::R7], 2);
        assert_eq!(summary.records, 11);
        // Nine first alerts, and the R8 repeat as a follow-up at the end.
        let alerts: Vec<(RuleId, u64, bool)> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Alert { alert } => Some((alert.rule, alert.count, alert.repeat)),
                _ => None,
            })
            .collect();
        assert_eq!(alerts.len(), 10, "{alerts:?}");
        assert_eq!(alerts[9], (RuleId::R7, 1, true));
        let r7 = summary
            .alerts
            .iter()
            .find(|g| g.rule == RuleId::R7)
            .unwrap();
        assert_eq!((r7.occurrences, r7.lines), (2, 2));
        // The alerts carry what the capture host looked up.
        let Some(Line::Alert { alert }) = lines.iter().find(|l| matches!(l, Line::Alert { .. }))
        else {
            panic!("no alert");
        };
        assert_eq!(alert.driver.as_deref(), Some("mem"));
        assert_eq!(alert.cgroup.as_deref(), Some("/system.slice/x.service"));
        assert_eq!(
            alert.stack,
            ["zap_pte_range+0x1f0"],
            "from the first caller"
        );
        assert_eq!(
            alert.time, "2023-11-14T22:13:21.000Z",
            "the capture's clock"
        );
        let Some(Line::Summary { summary: last }) = lines.last() else {
            panic!("last line {:?}", lines.last());
        };
        assert_eq!(**last, summary);
    }

    #[test]
    fn the_capture_hosts_arch_decides_r7() {
        let mut path = write_capture("arch", &every_rule()[6..7], &[]);
        assert_eq!(run(&path, opts(Format::Json)).0.rules[&RuleId::R7], 1);
        // The same record from an arch without pte_special breaks no rule.
        let text = std::fs::read_to_string(&path).unwrap().replacen(
            "\"pte_special\":true",
            "\"pte_special\":false",
            1,
        );
        path.set_extension("nospecial");
        std::fs::write(&path, text).unwrap();
        assert!(run(&path, opts(Format::Json)).0.rules.is_empty());
    }

    #[test]
    fn text_mode_prints_records_and_a_summary_with_alerts() {
        let path = write_capture("text", &every_rule(), &[Entry::Lost { lost: 3, total: 3 }]);
        let (summary, text) = run(&path, opts(Format::Text));
        let plain = anstream::adapter::strip_str(&text).to_string();
        let lines: Vec<&str> = plain.lines().collect();
        assert!(lines[0].starts_with("pfnwatch: replaying a capture of kernel 6.12.117"));
        assert!(lines[1].starts_with("TIME (UTC)"));
        assert!(
            lines[2].starts_with("22:13:21.000000 info R1"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains(" driver mem "), "{}", lines[2]);
        assert!(!plain.contains("    at "), "no call path without --stack");
        assert!(plain.contains("pfnwatch: the kernel lost 3 records (3 so far)"));
        assert!(plain.contains("\nsummary: 11 records shown, 0 filtered out, 3 lost"));
        assert!(
            plain.contains("\n  alerts  critical R2 fault_insert_into_cow: proc101[101]")
                && plain.contains("\n          critical R5 folio_walk_on_pfnmap: proc104[104]"),
            "{plain}"
        );
        assert!(plain.contains("critical R7 pfnmap_pte_not_special: proc106[106] file mem dev 1:1 driver mem x2 (2 lines)"), "{plain}");
        assert!(plain.contains(" vmf_insert_pfn_prot "), "{plain}");
        assert!(plain.contains(" ret BUG\n"), "R2 at entry: {plain}");
        assert_eq!(summary.lost, 3);
        // Colour codes are there for a terminal to show.
        assert!(text.contains('\x1b'));
        // --stack adds the call path without the BPF frames.
        let mut with_stack = opts(Format::Text);
        with_stack.stack = true;
        let (_, text) = run(&path, with_stack);
        assert!(text.contains("\n    at zap_pte_range+0x1f0\n"), "{text}");
        assert!(!text.contains("bpf_trampoline"));
    }

    #[test]
    fn json_mode_with_stack_and_an_alerts_file() {
        let path = write_capture("json", &every_rule()[..2], &[]);
        let alerts = path.with_extension("alerts");
        let _ = std::fs::remove_file(&alerts);
        let mut view = opts(Format::Json);
        view.stack = true;
        view.alerts_file = Some(alerts.clone());
        let (_, text) = run(&path, view);
        let v: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(v["type"], "record");
        assert_eq!(v["call_path"], serde_json::json!(["zap_pte_range+0x1f0"]));
        assert!(v.get("stack").is_none(), "no kernel addresses: {v}");
        let written = std::fs::read_to_string(&alerts).unwrap();
        let rules: Vec<RuleId> = written
            .lines()
            .map(|l| {
                serde_json::from_str::<crate::pipeline::alert::Alert>(l)
                    .unwrap()
                    .rule
            })
            .collect();
        assert_eq!(rules, [RuleId::R1, RuleId::R2]);
    }

    #[test]
    fn filters_and_count_cut_the_replay() {
        let path = write_capture("filters", &every_rule(), &[]);
        let shown = |filter: Filter, count: Option<u64>| {
            let mut view = opts(Format::Json);
            view.filter = filter;
            view.count = count;
            let (summary, text) = run(&path, view);
            let hooks: Vec<Hook> = json_lines(&text)
                .into_iter()
                .filter_map(|l| match l {
                    Line::Record { record, .. } => Some(record.hook),
                    _ => None,
                })
                .collect();
            assert_eq!(summary.records as usize, hooks.len());
            (summary, hooks)
        };
        let (s, hooks) = shown(
            Filter {
                rules: [RuleId::R8].into(),
                ..Filter::default()
            },
            None,
        );
        assert_eq!(hooks, [Hook::VmNormalPage]);
        assert_eq!(s.filtered, 10);
        let (_, hooks) = shown(
            Filter {
                min_severity: Some(Severity::Critical),
                ..Filter::default()
            },
            None,
        );
        // R4 is critical only at a pfn insert into PFNMAP|MIXEDMAP: this
        // R4 is info; R2 at a pfn insert's entry is critical.
        assert_eq!(
            hooks,
            [
                Hook::VmfInsertPfnProt,
                Hook::FolioWalkStart,
                Hook::VmNormalPagePmd,
                Hook::VmNormalPage,
                Hook::PrintBadPageMap,
                Hook::VmNormalPage
            ]
        );
        let (_, hooks) = shown(
            Filter {
                hooks: Some([Hook::RemapPfnRange].into()),
                cow_only: true,
                ..Filter::default()
            },
            None,
        );
        assert_eq!(hooks, [Hook::RemapPfnRange, Hook::RemapPfnRange]);
        let (_, hooks) = shown(
            Filter {
                pids: [101].into(),
                ..Filter::default()
            },
            None,
        );
        assert_eq!(hooks, [Hook::VmfInsertPfnProt]);
        let (_, hooks) = shown(
            Filter {
                comms: ["proc104".into()].into(),
                ..Filter::default()
            },
            None,
        );
        assert_eq!(hooks, [Hook::FolioWalkStart]);
        let (s, _) = shown(
            Filter {
                devices: vec![DeviceMatch::parse("10:200").unwrap()],
                ..Filter::default()
            },
            None,
        );
        assert_eq!((s.records, s.filtered), (0, 11));
        let (s, hooks) = shown(Filter::default(), Some(3));
        assert_eq!(hooks.len(), 3);
        assert_eq!(s.alerts.len(), 3);
    }

    #[test]
    fn losses_past_u64_saturate() {
        // Found reviewing what the fuzz targets feed in (the input is
        // fuzz/corpus/capture_read/lost-overflow.capture): a capture's loss
        // counts are any the file says, and their sum overflowed.
        let huge = Entry::Lost {
            lost: u64::MAX,
            total: u64::MAX,
        };
        let path = write_capture("lost", &[], &[huge.clone(), huge]);
        assert_eq!(run(&path, opts(Format::Json)).0.lost, u64::MAX);
    }

    #[test]
    fn damaged_captures_print_nothing() {
        let path = write_capture("damaged", &every_rule(), &[]);
        let bytes = std::fs::read(&path).unwrap();
        let cut = path.with_extension("cut");
        std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
        let mut out = Vec::new();
        let err = replay(&cut, RuleConfig::default(), opts(Format::Text), &mut out).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&cut.display().to_string()), "{msg}");
        assert!(msg.contains("line 12") && msg.contains("cut off"), "{msg}");
        assert!(out.is_empty(), "nothing half-applied");
        let missing = path.with_extension("nope");
        let msg = format!(
            "{:#}",
            replay(
                &missing,
                RuleConfig::default(),
                opts(Format::Text),
                &mut out
            )
            .unwrap_err()
        );
        assert!(msg.contains("reading") && msg.contains("nope"), "{msg}");
    }

    #[test]
    fn replay_config_changes_the_verdicts() {
        let path = write_capture("config", &every_rule(), &[]);
        let config = RuleConfig::default().with([RuleId::R8], [(RuleId::R1, Severity::Critical)]);
        let mut out = Vec::new();
        let s = replay(&path, config, opts(Format::Json), &mut out).unwrap();
        assert!(!s.rules.contains_key(&RuleId::R8));
        let r1 = s.alerts.iter().find(|g| g.rule == RuleId::R1).unwrap();
        assert_eq!(r1.severity, Severity::Critical);
    }
}
