//! How trace, record and replay print what the kernel reports: one human
//! line per item with aligned columns and coloured severities, or one JSON
//! object per line with the stable schema of docs/trace-json.md.

use crate::alert::{Alert, Clock};
use crate::counters::Counts;
use crate::enrich::Enrichment;
use crate::loader::{ProgramReport, ProgramState};
use crate::record::{DevNum, Record};
use crate::rules::{Hit, Severity};
use crate::summary::Summary;
use anstyle::{AnsiColor, Style};
use pfnwatch_common::{Hook, vm_flags};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// The JSON schema's version, on the ready line. It changes when a field
/// is removed or changes meaning; new fields may appear without it.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Where the records come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The running kernel (trace, record).
    Live,
    /// A capture file (replay).
    Replay,
}

/// One line of output. The JSON form is tagged with "type".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    /// Programs are attached (or the capture is open); records follow.
    Ready {
        /// [`FORMAT_VERSION`].
        version: u32,
        source: Source,
        release: String,
        programs: Vec<ProgramReport>,
        /// When the replayed capture was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recorded_at: Option<String>,
    },
    Record {
        #[serde(flatten)]
        record: Box<Record>,
        /// Ids of the rules the call matches, most severe first.
        rules: Vec<String>,
        #[serde(flatten)]
        view: Box<RecordView>,
    },
    /// An alert as the duplicate collapsing lets it out: a rule's first
    /// hit, or a follow-up counting the repeats.
    Alert {
        #[serde(flatten)]
        alert: Box<Alert>,
    },
    /// The kernel dropped records since the last such line (ring buffer full).
    Lost { lost: u64, total: u64 },
    /// Counter totals since pfnwatch attached.
    Counts { counts: Counts },
    /// The last line: what was shown, per hook, class and rule.
    Summary {
        #[serde(flatten)]
        summary: Box<Summary>,
    },
}

/// What a record line adds to the kernel's record: decoded and derived
/// fields, and the host's context.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordView {
    /// Wall-clock time of the call (RFC 3339, UTC, microseconds).
    pub time: String,
    /// `vm_flags` by name.
    pub vm_flags_names: Vec<String>,
    /// vm_pgoff + page offset of `addr` (of a huge entry's first page): the
    /// pfn the remap rule predicts.
    pub expected_pfn: u64,
    /// The mapped device node's major:minor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The symbolised kernel call path, innermost first (`--stack`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub call_path: Vec<String>,
    /// The most severe of `hits`; null when no rule matches.
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hits: Vec<RuleHit>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHit {
    pub rule: String,
    pub name: String,
    pub severity: Severity,
}

/// Wall-clock time of a CLOCK_MONOTONIC stamp, to the microsecond.
pub fn wall_time(clock: &Clock, mono_ns: u64) -> String {
    let real = i128::from(mono_ns) + clock.offset_ns();
    let time = u64::try_from(real)
        .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_micros(time).to_string()
}

impl Line {
    /// A record line. `stack`: show the call path (and the raw addresses).
    pub fn record(
        mut record: Record,
        hits: &[Hit],
        host: &Enrichment,
        clock: &Clock,
        stack: bool,
    ) -> Line {
        let device = record
            .file
            .as_ref()
            .filter(|f| f.rdev != (DevNum { major: 0, minor: 0 }))
            .map(|f| f.rdev.to_string());
        let view = RecordView {
            time: wall_time(clock, record.ts_ns),
            vm_flags_names: vm_flags::names(record.vm_flags)
                .map(str::to_owned)
                .collect(),
            expected_pfn: record.rule_pfn(),
            device,
            driver: host.driver.clone(),
            cgroup: host.cgroup.clone(),
            container: host.container.clone(),
            call_path: if stack {
                host.stack.clone()
            } else {
                Vec::new()
            },
            severity: hits.iter().map(|h| h.severity).max(),
            hits: hits
                .iter()
                .map(|h| RuleHit {
                    rule: h.rule.id.to_owned(),
                    name: h.rule.name.to_owned(),
                    severity: h.severity,
                })
                .collect(),
        };
        if !stack {
            // Without --stack the output is the same whether or not the
            // kernel captured one (record always does).
            record.stack.clear();
        }
        Line::Record {
            record: Box::new(record),
            rules: hits.iter().map(|h| h.rule.id.to_owned()).collect(),
            view: Box::new(view),
        }
    }

    /// The line as printed; text may carry colour, which the caller's
    /// stream strips when it is not a terminal.
    pub fn render(&self, format: Format) -> String {
        match format {
            // Serializing these plain data types cannot fail.
            Format::Json => serde_json::to_string(self).unwrap_or_default(),
            Format::Text => match self {
                Line::Ready {
                    release,
                    programs,
                    recorded_at,
                    ..
                } => ready_text(release, programs, recorded_at.as_deref()),
                Line::Record { record, view, .. } => record_text(record, view),
                Line::Alert { alert } => styled(severity_style(alert.severity), &alert.summary()),
                Line::Lost { lost, total } => styled(
                    AnsiColor::Yellow.on_default().bold(),
                    &format!(
                        "pfnwatch: the kernel lost {lost} record{} ({total} so far): the ring \
                         buffer was full; raise --ringbuf-kib or narrow the filters",
                        if *lost == 1 { "" } else { "s" }
                    ),
                ),
                Line::Counts { counts } => counts_text(counts),
                Line::Summary { summary } => summary.text(),
            },
        }
    }
}

fn styled(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

fn severity_style(severity: Severity) -> Style {
    match severity {
        Severity::Critical => AnsiColor::Red.on_default().bold(),
        Severity::Warning => AnsiColor::Yellow.on_default().bold(),
        Severity::Info => AnsiColor::Cyan.on_default(),
    }
}

fn ready_text(release: &str, programs: &[ProgramReport], recorded_at: Option<&str>) -> String {
    let attached: Vec<&str> = programs
        .iter()
        .filter(|p| p.state == ProgramState::Attached)
        .map(|p| p.program.as_str())
        .collect();
    let skipped = programs
        .iter()
        .filter(|p| p.state == ProgramState::Skipped)
        .count();
    let mut s = match recorded_at {
        Some(at) => format!("pfnwatch: replaying a capture of kernel {release} recorded {at}: "),
        None => format!("pfnwatch: kernel {release}: "),
    };
    let _ = write!(
        s,
        "{} of {} programs attached ({})",
        attached.len(),
        programs.len(),
        attached.join(", ")
    );
    if skipped > 0 {
        let _ = write!(s, ", {skipped} not needed by the filters");
    }
    s
}

/// Widths of the aligned columns; longer values push the rest right.
const TIME_W: usize = 15;
const RULES_W: usize = 17;
const WHO_W: usize = 26;
const HOOK_W: usize = 19;
const CLASS_W: usize = 30;

/// The column heads of text output, printed once after the ready line.
pub fn header() -> String {
    let s = format!(
        "{:<TIME_W$} {:<RULES_W$} {:<WHO_W$} {:<HOOK_W$} {:<CLASS_W$} DETAIL",
        "TIME (UTC)", "SEVERITY RULES", "COMM[TGID/PID]", "HOOK", "CLASS"
    );
    styled(Style::new().bold(), &s)
}

fn record_text(r: &Record, v: &RecordView) -> String {
    // HH:MM:SS.ffffff out of the RFC 3339 time.
    let time = v.time.get(11..26).unwrap_or(&v.time);
    let rules = match v.severity {
        Some(sev) => {
            let ids: Vec<&str> = v.hits.iter().map(|h| h.rule.as_str()).collect();
            let text = format!("{sev} {}", ids.join(","));
            // Pad outside the escape codes, so the columns stay aligned.
            let pad = RULES_W.saturating_sub(text.len());
            format!("{}{:pad$}", styled(severity_style(sev), &text), "")
        }
        None => format!("{:<RULES_W$}", "-"),
    };
    let who = format!("{}[{}/{}]", r.comm, r.tgid, r.pid);
    let mut s = format!(
        "{time:<TIME_W$} {rules} {who:<WHO_W$} {:<HOOK_W$} {:<CLASS_W$}",
        r.hook.function(),
        r.class.to_string(),
    );
    // Writing to a String cannot fail.
    let flags: Vec<&str> = v
        .vm_flags_names
        .iter()
        .map(|f| f.strip_prefix("VM_").unwrap_or(f))
        .collect();
    let _ = write!(
        s,
        " vma {:#x}-{:#x} {}",
        r.vm_start,
        r.vm_end,
        flags.join("|")
    );
    let _ = write!(s, " pgoff {:#x}", r.vm_pgoff);
    if let Some(before) = r.pgoff_before.filter(|b| *b != r.vm_pgoff) {
        let _ = write!(s, " (was {before:#x})");
    }
    let _ = write!(s, " addr {:#x}", r.addr);
    match r.pfn {
        Some(pfn) if r.hook.maps_pfns() => {
            let _ = write!(s, " pfn {pfn:#x} size {:#x}", r.size);
        }
        Some(pfn) => {
            let mark = if pfn == v.expected_pfn { "==" } else { "!=" };
            let _ = write!(s, " pfn {pfn:#x} {mark} expected {:#x}", v.expected_pfn);
        }
        None => s.push_str(" pfn ?"),
    }
    // A huge entry: its pfn is its first page's.
    match r.level {
        1 => s.push_str(" (pmd)"),
        2 => s.push_str(" (pud)"),
        _ => {}
    }
    if let Some(f) = &r.file {
        let _ = write!(s, " file ");
        // The parent dentry names the PCI device of a BAR file; the root of
        // a filesystem (devtmpfs for /dev/mem) says nothing.
        if f.parent != "/" && !f.parent.is_empty() {
            let _ = write!(s, "{}/", f.parent);
        }
        s.push_str(&f.name);
    }
    if let Some(dev) = &v.device {
        let _ = write!(s, " dev {dev}");
    }
    if let Some(driver) = &v.driver {
        let _ = write!(s, " driver {driver}");
    }
    let _ = write!(s, " ret {}", result(r));
    for frame in call_path(&v.call_path) {
        let _ = write!(s, "\n    at {frame}");
    }
    s
}

/// A call's return value as its hook means it.
fn result(r: &Record) -> String {
    match r.hook {
        Hook::VmNormalPage | Hook::VmNormalPagePmd | Hook::FolioWalkStart => {
            if r.ret == 0 { "NULL" } else { "page" }.to_owned()
        }
        Hook::RemapPfnRange | Hook::RemapPfnRangeComplete if r.ret < 0 => {
            format!("{} ({})", r.ret, crate::errors::errno_name(-(r.ret as i32)))
        }
        _ if r.hook.maps_pfns() && r.ret != 0 && !r.hook.reports_bad_map() => {
            // vm_fault_t: VM_FAULT_NOPAGE (0x100) is success for inserts.
            format!("{:#x}", r.ret)
        }
        _ => r.ret.to_string(),
    }
}

/// The call path without the BPF frames in front of it: the trampoline and
/// program are how pfnwatch got there, not what the kernel was doing.
fn call_path(frames: &[String]) -> &[String] {
    let plumbing = |f: &String| f.starts_with("bpf_") || f.contains("[bpf]");
    let skip = frames.iter().take_while(|f| plumbing(f)).count();
    if skip == frames.len() {
        frames
    } else {
        &frames[skip..]
    }
}

fn counts_text(c: &Counts) -> String {
    let mut s = String::from("counts:");
    for hook in Hook::ALL {
        let Some(classes) = c.calls.get(&hook) else {
            continue;
        };
        let detail: Vec<String> = classes.iter().map(|(cl, n)| format!("{cl} {n}")).collect();
        let _ = write!(
            s,
            "\n  {hook}: {} ({})",
            c.hook_total(hook),
            detail.join(", ")
        );
    }
    for (hook, errnos) in &c.errors {
        for (errno, n) in errnos {
            let _ = write!(s, "\n  {hook}: errno {errno} x{n}");
        }
    }
    if c.drops > 0 {
        let _ = write!(s, "\n  ring buffer full: {} records lost", c.drops);
    }
    if c.calls.is_empty() {
        s.push_str(" none");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::MappedFile;
    use crate::rules::{Context, RuleConfig, RuleSet};
    use pfnwatch_common::{Class, class};

    fn rules() -> RuleSet {
        RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        )
    }

    /// 2023-11-14T22:13:20Z at monotonic 0.
    fn clock() -> Clock {
        Clock::with_offset(1_700_000_000_000_000_000)
    }

    fn remap() -> Record {
        Record {
            ts_ns: 12_345_678_901,
            hook: Hook::RemapPfnRange,
            class: Class(class::PFNMAP | class::COW | class::PFN_MATCH),
            pid: 7,
            tgid: 7,
            comm: "trig".into(),
            cgroup_id: 1,
            vm_flags: vm_flags::VM_PFNMAP | vm_flags::VM_IO | vm_flags::VM_MAYWRITE,
            vm_start: 0x1000,
            vm_end: 0x5000,
            vm_pgoff: 0xfd000,
            pgoff_before: Some(0),
            addr: 0x1000,
            pfn: Some(0xfd000),
            size: 0x4000,
            entry: 0,
            ret: 0,
            level: 0,
            file: None,
            stack: vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100],
        }
    }

    fn line(r: Record, host: &Enrichment, stack: bool) -> Line {
        let hits = rules().evaluate(&r);
        Line::record(r, &hits, host, &clock(), stack)
    }

    fn plain(text: &str) -> String {
        anstream::adapter::strip_str(text).to_string()
    }

    #[test]
    fn text_aligns_columns_and_shows_the_pfn_arithmetic() {
        let text = plain(&line(remap(), &Enrichment::default(), false).render(Format::Text));
        let cols: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(
            &cols[..6],
            [
                "22:13:32.345678",
                "info",
                "R1",
                "trig[7/7]",
                "remap_pfn_range",
                "pfnmap+cow+pfn_match"
            ],
            "{text}"
        );
        let hook_at = TIME_W + 1 + RULES_W + 1 + WHO_W + 1;
        assert_eq!(text.find("remap_pfn_range"), Some(hook_at), "{text}");
        assert!(
            text.contains(" vma 0x1000-0x5000 MAYWRITE|PFNMAP|IO pgoff 0xfd000 (was 0x0)"),
            "{text}"
        );
        assert!(text.ends_with(" pfn 0xfd000 size 0x4000 ret 0"), "{text}");
        // A lookup off the rule says so; no rule leaves a dash.
        let mut r = remap();
        r.hook = Hook::VmNormalPage;
        r.class = Class(class::PFNMAP | class::COW | class::ANON);
        r.addr = 0x2000;
        r.pfn = Some(0x38ea);
        r.ret = 1;
        let text = plain(&line(r, &Enrichment::default(), false).render(Format::Text));
        assert_eq!(
            text.find("trig[7/7]"),
            Some(TIME_W + 1 + RULES_W + 1),
            "{text}"
        );
        assert!(text.contains(" - "), "{text}");
        assert!(text.contains("pfn 0x38ea != expected 0xfd001"), "{text}");
        assert!(text.ends_with(" ret page"), "{text}");
        // A huge pmd looked up inside it: the rule holds for its first page.
        let mut r = remap();
        r.hook = Hook::VmNormalPagePmd;
        r.class = Class(class::PFNMAP | class::SPECIAL | class::PFN_MATCH | class::NO_PAGE);
        r.vm_start = 0x4000_0000;
        r.vm_end = 0x4080_0000;
        r.addr = 0x4020_5000;
        r.pfn = Some(0xfd200);
        r.level = 1;
        let text = plain(&line(r, &Enrichment::default(), false).render(Format::Text));
        assert!(
            text.contains("pfn 0xfd200 == expected 0xfd200 (pmd)"),
            "{text}"
        );
    }

    #[test]
    fn severities_are_coloured_and_columns_survive_the_colour() {
        let mut r = remap();
        r.hook = Hook::VmNormalPage;
        r.class = Class(class::PFNMAP | class::PFN_MATCH);
        r.ret = 1;
        let text = line(r, &Enrichment::default(), false).render(Format::Text);
        let red = AnsiColor::Red.on_default().bold();
        assert!(
            text.contains(&format!("{red}critical R6,R7{red:#}")),
            "{text:?}"
        );
        let stripped = plain(&text);
        assert_eq!(stripped.find("trig["), Some(TIME_W + 1 + RULES_W + 1));
        let text = line(remap(), &Enrichment::default(), false).render(Format::Text);
        let cyan = AnsiColor::Cyan.on_default();
        assert!(text.contains(&format!("{cyan}info R1{cyan:#}")), "{text:?}");
        // JSON never carries escape codes.
        let json = line(remap(), &Enrichment::default(), false).render(Format::Json);
        assert!(!json.contains('\x1b'));
    }

    #[test]
    fn text_names_file_device_driver_and_call_path() {
        let mut r = remap();
        r.file = Some(MappedFile {
            name: "resource0".into(),
            parent: "0000:00:02.0".into(),
            ino: 1,
            rdev: DevNum { major: 0, minor: 0 },
            sdev: DevNum {
                major: 0,
                minor: 20,
            },
        });
        let host = Enrichment {
            driver: Some("bochs-drm".into()),
            stack: vec![
                "bpf_trampoline_6442+0x5d".into(),
                "pci_mmap_resource_range+0x91".into(),
                "mmap_region+0x2a".into(),
            ],
            ..Enrichment::default()
        };
        let text = plain(&line(r.clone(), &host, true).render(Format::Text));
        assert!(
            text.contains(" file 0000:00:02.0/resource0 driver bochs-drm ret 0"),
            "{text}"
        );
        assert!(
            text.ends_with("\n    at pci_mmap_resource_range+0x91\n    at mmap_region+0x2a"),
            "{text}"
        );
        assert!(!plain(&line(r.clone(), &host, false).render(Format::Text)).contains("\n"));
        r.file = Some(MappedFile {
            name: "mem".into(),
            parent: "/".into(),
            ino: 2,
            rdev: DevNum { major: 1, minor: 1 },
            sdev: DevNum { major: 0, minor: 5 },
        });
        let text = plain(&line(r, &Enrichment::default(), false).render(Format::Text));
        assert!(text.contains(" file mem dev 1:1 ret 0"), "{text}");
    }

    #[test]
    fn json_record_carries_the_documented_fields() {
        let host = Enrichment {
            cgroup: Some("/system.slice/x.service".into()),
            container: None,
            driver: Some("mem".into()),
            stack: vec!["mmap_mem+0x9".into()],
        };
        let json = line(remap(), &host, true).render(Format::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["type"], "record");
        assert_eq!(v["time"], "2023-11-14T22:13:32.345678Z");
        assert_eq!(v["ts_ns"], 12_345_678_901u64);
        assert_eq!(v["hook"], "remap_pfn_range");
        assert_eq!(v["class"], "pfnmap+cow+pfn_match");
        assert_eq!(v["vm_flags_names"][1], "VM_PFNMAP");
        assert_eq!(v["expected_pfn"], 0xfd000);
        assert_eq!(v["pgoff_before"], 0);
        assert_eq!(v["driver"], "mem");
        assert_eq!(v["cgroup"], "/system.slice/x.service");
        assert_eq!(v["call_path"][0], "mmap_mem+0x9");
        assert_eq!(v["stack"][1], 0xffff_ffff_8100_0100u64);
        assert_eq!(v["rules"][0], "R1");
        assert_eq!(v["severity"], "info");
        assert_eq!(v["hits"][0]["name"], "cow_pfnmap_mapping");
        assert!(v.get("container").is_none());
        // Without --stack neither the path nor the raw addresses appear.
        let json = line(remap(), &host, false).render(Format::Json);
        assert!(
            !json.contains("call_path") && !json.contains("\"stack\""),
            "{json}"
        );
        // A record without rule hits has a null severity and no hits.
        let mut r = remap();
        r.class = Class(class::PFNMAP | class::PFN_MATCH);
        let v: serde_json::Value =
            serde_json::from_str(&line(r, &host, false).render(Format::Json)).unwrap();
        assert!(v["severity"].is_null() && v.get("hits").is_none());
        assert_eq!(v["rules"], serde_json::json!([]));
    }

    #[test]
    fn json_lines_round_trip() {
        let hits = rules().evaluate(&remap());
        let alert = Alert::new(hits[0], &remap(), Enrichment::default(), &clock());
        let lines = [
            Line::Ready {
                version: FORMAT_VERSION,
                source: Source::Replay,
                release: "6.12.1".into(),
                programs: Vec::new(),
                recorded_at: Some("2023-11-14T22:13:20Z".into()),
            },
            line(remap(), &Enrichment::default(), true),
            Line::Alert {
                alert: Box::new(alert),
            },
            Line::Lost { lost: 3, total: 5 },
            Line::Counts { counts: counts() },
            Line::Summary {
                summary: Box::default(),
            },
        ];
        for line in lines {
            let json = line.render(Format::Json);
            assert!(!json.contains('\n'));
            assert_eq!(serde_json::from_str::<Line>(&json).unwrap(), line, "{json}");
        }
    }

    #[test]
    fn ready_and_lost_lines_say_what_happened() {
        let program = |name: &str, state| ProgramReport {
            program: name.into(),
            attach: "fexit".into(),
            function: name.into(),
            state,
        };
        let programs = vec![
            program("a", ProgramState::Attached),
            program("b", ProgramState::Skipped),
            program("c", ProgramState::Missing),
        ];
        let ready = Line::Ready {
            version: 1,
            source: Source::Live,
            release: "6.12.1".into(),
            programs: programs.clone(),
            recorded_at: None,
        };
        assert_eq!(
            ready.render(Format::Text),
            "pfnwatch: kernel 6.12.1: 1 of 3 programs attached (a), 1 not needed by the filters"
        );
        let replay = Line::Ready {
            version: 1,
            source: Source::Replay,
            release: "6.12.1".into(),
            programs,
            recorded_at: Some("2023-11-14T22:13:20Z".into()),
        };
        assert!(replay.render(Format::Text).starts_with(
            "pfnwatch: replaying a capture of kernel 6.12.1 recorded 2023-11-14T22:13:20Z: 1 of 3"
        ));
        let lost = plain(&Line::Lost { lost: 1, total: 9 }.render(Format::Text));
        assert!(
            lost.starts_with("pfnwatch: the kernel lost 1 record (9 so far)"),
            "{lost}"
        );
        assert!(plain(&header()).starts_with("TIME (UTC)      SEVERITY RULES"));
    }

    #[test]
    fn results_read_as_the_hook_means_them() {
        let mut r = remap();
        r.class = Class(class::COW | class::PARTIAL | class::ERROR);
        r.ret = -22;
        assert_eq!(result(&r), "-22 (EINVAL)");
        r.hook = Hook::VmfInsertPfnProt;
        r.ret = 0x100;
        assert_eq!(result(&r), "0x100");
        r.hook = Hook::FolioWalkStart;
        r.ret = 0;
        assert_eq!(result(&r), "NULL");
    }

    fn counts() -> Counts {
        let mut c = Counts::default();
        c.calls
            .entry(Hook::VmNormalPage)
            .or_default()
            .insert(Class(class::PFNMAP | class::SPECIAL | class::NO_PAGE), 4);
        c.errors
            .entry(Hook::RemapPfnRange)
            .or_default()
            .insert(22, 1);
        c.drops = 2;
        c
    }

    #[test]
    fn counts_text_lists_hooks_classes_and_losses() {
        let mut c = Counts::default();
        c.calls
            .entry(Hook::VmNormalPage)
            .or_default()
            .insert(Class(class::PFNMAP | class::SPECIAL | class::NO_PAGE), 4);
        c.errors
            .entry(Hook::RemapPfnRange)
            .or_default()
            .insert(22, 1);
        c.drops = 2;
        let text = counts_text(&c);
        assert!(
            text.contains("vm_normal_page: 4 (pfnmap+special+no_page 4)"),
            "{text}"
        );
        assert!(text.contains("remap_pfn_range: errno 22 x1"), "{text}");
        assert!(text.contains("2 records lost"), "{text}");
        assert_eq!(counts_text(&Counts::default()), "counts: none");
    }
}
