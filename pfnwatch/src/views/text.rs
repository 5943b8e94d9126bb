//! Lines as text for people: aligned columns, coloured severities (the
//! stream strips the colour when it is not a terminal).

use super::line::{Line, RecordView};
use super::numbers::{dec, hex};
use crate::kernel::counters::Counts;
use crate::kernel::decode::DevNum;
use crate::kernel::decode::Record;
use crate::kernel::loader::{ProgramReport, ProgramState};
use crate::kernel::refusals::errno_name;
use crate::printable::printable;
use crate::rules::{RuleId, Severity};
use anstyle::{AnsiColor, Style};
use pfnwatch_common::{Family, Hook, Level, vm_flags};
use std::fmt::Write;

/// A line as text; `color`: with the escape codes of its styles.
pub fn render(line: &Line, color: bool) -> String {
    let styled = |style, text: &str| styled(color, style, text);
    match line {
        Line::Ready {
            release,
            programs,
            recorded_at,
            ..
        } => ready_text(release, programs, recorded_at.as_deref()),
        Line::Record { record, view, .. } => record_text(record, view, color),
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
    }
}

/// Plain text needs no codes that a stream would strip again.
fn styled(color: bool, style: Style, text: &str) -> String {
    if color {
        format!("{style}{text}{style:#}")
    } else {
        text.to_owned()
    }
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
        .filter(|p| p.state.works())
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
pub fn header(color: bool) -> String {
    let s = format!(
        "{:<TIME_W$} {:<RULES_W$} {:<WHO_W$} {:<HOOK_W$} {:<CLASS_W$} DETAIL",
        "TIME (UTC)", "SEVERITY RULES", "COMM[TGID/PID]", "HOOK", "CLASS"
    );
    styled(color, Style::new().bold(), &s)
}

/// What a record's text line shows beyond the record itself.
pub struct Extra<'a> {
    /// HH:MM:SS.ffffff, UTC.
    pub time: &'a str,
    /// The most severe hit's, and the rules hit.
    pub severity: Option<Severity>,
    pub rules: &'a [RuleId],
    /// The record's class as text, when the caller keeps it formatted.
    pub class: Option<&'a str>,
    pub driver: Option<&'a str>,
    pub handlers: Option<&'a str>,
    /// The call path, when asked for.
    pub stack: &'a [String],
}

fn record_text(r: &Record, v: &RecordView, color: bool) -> String {
    let rules: Vec<RuleId> = v.hits.iter().map(|h| h.rule).collect();
    let extra = Extra {
        // HH:MM:SS.ffffff out of the RFC 3339 time.
        time: v.time.get(11..26).unwrap_or(&v.time),
        severity: v.severity,
        rules: &rules,
        class: None,
        driver: v.host.driver.as_deref(),
        handlers: v.host.handlers.as_deref(),
        stack: &v.host.stack,
    };
    let mut s = String::new();
    record_into(&mut s, r, &extra, color);
    s
}

/// Pads what was written to `s` since `start` to `width` characters.
fn pad(s: &mut String, start: usize, width: usize) {
    let text = &s[start..];
    let written = if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    };
    s.extend(std::iter::repeat_n(' ', width.saturating_sub(written)));
}

/// A record's line, appended to `s`: what the view writes for each record
/// (straight from the record, no line built first: replay prints up to a
/// million a second).
pub fn record_into(s: &mut String, r: &Record, x: &Extra, color: bool) {
    // Writing to a String cannot fail.
    let at = s.len();
    s.push_str(x.time);
    pad(s, at, TIME_W);
    s.push(' ');
    match x.severity {
        Some(sev) => {
            let at = s.len();
            let _ = write!(s, "{sev} ");
            for (i, id) in x.rules.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(id.as_str());
            }
            // Pad outside the escape codes, so the columns stay aligned.
            let text_len = s[at..].chars().count();
            if color {
                let text = s.split_off(at);
                s.push_str(&styled(color, severity_style(sev), &text));
            }
            s.extend(std::iter::repeat_n(' ', RULES_W.saturating_sub(text_len)));
        }
        None => {
            let at = s.len();
            s.push('-');
            pad(s, at, RULES_W);
        }
    }
    s.push(' ');
    let at = s.len();
    s.push_str(&printable(&r.comm));
    s.push('[');
    dec(s, r.tgid);
    s.push('/');
    dec(s, r.pid);
    s.push(']');
    pad(s, at, WHO_W);
    s.push(' ');
    let at = s.len();
    s.push_str(r.hook.function());
    pad(s, at, HOOK_W);
    s.push(' ');
    let at = s.len();
    match x.class {
        Some(text) => s.push_str(text),
        None => {
            let _ = write!(s, "{}", r.class);
        }
    }
    pad(s, at, CLASS_W);
    s.push_str(" vma ");
    hex(s, r.vm_start);
    s.push('-');
    hex(s, r.vm_end);
    s.push(' ');
    for (i, flag) in vm_flags::names(r.vm_flags).enumerate() {
        if i > 0 {
            s.push('|');
        }
        s.push_str(flag.strip_prefix("VM_").unwrap_or(flag));
    }
    s.push_str(" pgoff ");
    hex(s, r.vm_pgoff);
    if let Some(before) = r.pgoff_before.filter(|b| *b != r.vm_pgoff) {
        let _ = write!(s, " (was {before:#x})");
    }
    s.push_str(" addr ");
    hex(s, r.addr);
    match r.pfn {
        Some(pfn) if r.hook.family().maps_pfns() => {
            s.push_str(" pfn ");
            hex(s, pfn);
            s.push_str(" size ");
            hex(s, r.size);
        }
        Some(pfn) => {
            let expected = r.rule_pfn();
            s.push_str(" pfn ");
            hex(s, pfn);
            s.push_str(if pfn == expected { " == " } else { " != " });
            s.push_str("expected ");
            hex(s, expected);
        }
        None => s.push_str(" pfn ?"),
    }
    // A huge entry: its pfn is its first page's.
    match r.level {
        Level::Pmd => s.push_str(" (pmd)"),
        Level::Pud => s.push_str(" (pud)"),
        Level::Pte => {}
    }
    if let Some(f) = &r.file {
        s.push_str(" file ");
        // The parent dentry names the PCI device of a BAR file; the root of
        // a filesystem (devtmpfs for /dev/mem) says nothing.
        if f.parent != "/" && !f.parent.is_empty() {
            let _ = write!(s, "{}/", printable(&f.parent));
        }
        s.push_str(&printable(&f.name));
        if f.rdev != (DevNum { major: 0, minor: 0 }) {
            s.push_str(" dev ");
            dec(s, f.rdev.major);
            s.push(':');
            dec(s, f.rdev.minor);
        }
    }
    if let Some(driver) = x.driver {
        s.push_str(" driver ");
        s.push_str(&printable(driver));
    }
    if let Some(handlers) = x.handlers {
        let _ = write!(s, " {}", printable(handlers));
    }
    s.push_str(" ret ");
    result_into(s, r);
    for frame in x.stack {
        let _ = write!(s, "\n    at {}", printable(frame));
    }
}

/// A call's return value as its hook means it.
fn result_into(s: &mut String, r: &Record) {
    let _ = match r.hook.family() {
        Family::Lookup | Family::Walk => {
            s.push_str(if r.ret == 0 { "NULL" } else { "page" });
            Ok(())
        }
        Family::Remap | Family::Follow if r.ret < 0 => {
            write!(s, "{} ({})", r.ret, errno_name(-(r.ret as i32)))
        }
        // The kernel BUG()s right after: there is no return value.
        Family::Insert if r.at_entry => write!(s, "BUG"),
        // vm_fault_t: VM_FAULT_NOPAGE (0x100) is success for inserts.
        Family::Insert if r.ret != 0 && r.hook.returns_vm_fault() => write!(s, "{:#x}", r.ret),
        Family::VmaCreated if r.fork => write!(s, "created (fork)"),
        Family::VmaCreated => write!(s, "created"),
        Family::VmaGone if r.free_unseen => write!(s, "gone (free unseen)"),
        Family::VmaGone => write!(s, "gone"),
        Family::Remap | Family::Follow | Family::Insert | Family::BadMap => {
            write!(s, "{}", r.ret)
        }
    };
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
    for (hook, n) in &c.misses {
        let _ = write!(
            s,
            "\n  {hook}: {n} calls skipped by the kernel (the program was running on that CPU already)"
        );
    }
    if c.calls.is_empty() {
        s.push_str(" none");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(r: &Record) -> String {
        let mut s = String::new();
        result_into(&mut s, r);
        s
    }
    use crate::enrich::Enrichment;
    use crate::views::line::Format;
    use crate::views::line::Source;
    use crate::views::line::tests::{counts, line, plain, remap};
    use pfnwatch_common::{Class, class};

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
        r.level = Level::Pmd;
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
        r.file = Some(crate::kernel::decode::test_file(
            "resource0",
            "0000:00:02.0",
            (0, 0),
        ));
        let host = Enrichment {
            driver: Some("bochs-drm".into()),
            stack: vec![
                "bpf_trampoline_6442+0x5d".to_owned(),
                "pci_mmap_resource_range+0x91".to_owned(),
                "mmap_region+0x2a".to_owned(),
            ]
            .into(),
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
        r.file = Some(crate::kernel::decode::test_file("mem", "/", (1, 1)));
        let text = plain(&line(r, &Enrichment::default(), false).render(Format::Text));
        assert!(text.contains(" file mem dev 1:1 ret 0"), "{text}");
    }

    #[test]
    fn ready_and_lost_lines_say_what_happened() {
        let program = |name: &str, state| ProgramReport {
            program: name.into(),
            attach: crate::kernel::programs::Attach::Fexit,
            hook: Hook::VmNormalPage,
            target: "vm_normal_page".into(),
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
        assert!(plain(&header(true)).starts_with("TIME (UTC)      SEVERITY RULES"));
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
        r.hook = Hook::VmNormalPagePud;
        r.ret = 1;
        assert_eq!(result(&r), "page");
        r.hook = Hook::VmfInsertPfnPmd;
        r.at_entry = true;
        assert_eq!(result(&r), "BUG");
        r.at_entry = false;
        r.hook = Hook::VmInsertPage;
        r.ret = -16;
        assert_eq!(result(&r), "-16");
        r.hook = Hook::CopyPageRange;
        r.fork = true;
        assert_eq!(result(&r), "created (fork)");
        r.hook = Hook::VmAreaFree;
        assert_eq!(result(&r), "gone");
        r.free_unseen = true;
        assert_eq!(result(&r), "gone (free unseen)");
        r.hook = Hook::FollowPfnmapStart;
        r.ret = -22;
        assert_eq!(result(&r), "-22 (EINVAL)");
        r.ret = 1;
        r.hook = Hook::PrintBadPageMap;
        assert_eq!(result(&r), "1");
    }

    #[test]
    fn counts_text_lists_hooks_classes_and_losses() {
        let text = counts_text(&counts());
        assert!(
            text.contains("vm_normal_page: 4 (pfnmap+special+no_page 4)"),
            "{text}"
        );
        assert!(text.contains("remap_pfn_range: errno 22 x1"), "{text}");
        assert!(text.contains("2 records lost"), "{text}");
        assert!(!text.contains("skipped"), "{text}");
        let mut c = counts();
        c.misses.insert(Hook::VmNormalPage, 3);
        let text = counts_text(&c);
        assert!(
            text.contains("vm_normal_page: 3 calls skipped by the kernel"),
            "{text}"
        );
        assert_eq!(counts_text(&Counts::default()), "counts: none");
    }
}

#[cfg(test)]
mod direct_tests {
    //! The view writes record lines straight from the outcome: they must
    //! be the lines [`Line::record`] renders.

    use super::*;
    use crate::enrich::Enrichment;
    use crate::pipeline::alert::Clock;
    use crate::pipeline::filter::Filter;
    use crate::pipeline::{Outcome, Sink};
    use crate::views::line::tests::{clock, remap, rules};
    use crate::views::line::{Format, day_time, wall_time};
    use crate::views::{View, ViewOptions};
    use pfnwatch_common::{Class, class};

    fn view_line(outcome: &Outcome, stack: bool, color: bool) -> String {
        let opts = ViewOptions {
            format: Format::Text,
            stack,
            filter: Filter::default(),
            count: None,
            dedup_window: std::time::Duration::from_secs(10),
            alerts_file: None,
            color,
        };
        let mut out = Vec::new();
        let mut view = View::new(&mut out, &opts, clock());
        view.outcome(outcome).unwrap();
        drop(view);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_views_record_lines_are_line_records_rendered() {
        let host = Enrichment {
            driver: Some("bochs-drm".into()),
            handlers: Some("fault:f mmap:m".into()),
            stack: vec!["mmap_region+0x2a".to_owned()].into(),
            ..Enrichment::default()
        };
        let mut plain_hit = remap();
        plain_hit.comm = "café\n".into();
        let mut no_hit = remap();
        no_hit.class = Class(class::PFNMAP | class::PFN_MATCH);
        no_hit.pfn = None;
        for r in [remap(), plain_hit, no_hit] {
            let outcome = Outcome {
                hits: rules().evaluate(&r),
                record: r,
                host: host.clone(),
            };
            for (stack, color) in [(false, false), (true, false), (true, true)] {
                let want =
                    Line::record(&outcome, &clock(), stack).render_styled(Format::Text, color);
                assert_eq!(view_line(&outcome, stack, color), format!("{want}\n"));
            }
        }
    }

    #[test]
    fn day_time_is_wall_times_time_of_day() {
        for (offset, mono) in [
            (1_700_000_000_000_000_000i128, 12_345_678_901u64),
            (0, 0),
            (-5, 3),
            (1_700_000_000_000_000_000, u64::MAX / 2),
        ] {
            let clock = Clock::with_offset(offset);
            let mut s = String::new();
            day_time(&clock, mono, &mut s);
            assert_eq!(s, wall_time(&clock, mono)[11..26], "{offset} {mono}");
        }
    }
}
