//! How trace (and later record/replay) print what the kernel reports: one
//! human line per item, or one JSON object per line for programs.

use crate::counters::Counts;
use crate::loader::ProgramReport;
use crate::record::{DevNum, Record};
use crate::rules::RuleSet;
use pfnwatch_common::Hook;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// One line of output. The JSON form is tagged with "type".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Line {
    /// Programs are attached; records follow.
    Ready {
        release: String,
        programs: Vec<ProgramReport>,
    },
    Record {
        #[serde(flatten)]
        record: Box<Record>,
        /// Ids of the rules the call matches, most severe first.
        rules: Vec<String>,
    },
    /// Counter totals since pfnwatch attached.
    Counts { counts: Counts },
}

impl Line {
    pub fn record(record: Record, rules: &RuleSet) -> Line {
        let rules = rules
            .evaluate(&record)
            .iter()
            .map(|h| h.rule.id.to_owned())
            .collect();
        Line::Record {
            record: Box::new(record),
            rules,
        }
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            // Serializing these plain data types cannot fail.
            Format::Json => serde_json::to_string(self).unwrap_or_default(),
            Format::Text => match self {
                Line::Ready { release, programs } => ready_text(release, programs),
                Line::Record { record, rules } => record_text(record, rules),
                Line::Counts { counts } => counts_text(counts),
            },
        }
    }
}

fn ready_text(release: &str, programs: &[ProgramReport]) -> String {
    let attached: Vec<&str> = programs
        .iter()
        .filter(|p| p.state == crate::loader::ProgramState::Attached)
        .map(|p| p.program.as_str())
        .collect();
    format!(
        "pfnwatch: kernel {release}: {} of {} programs attached ({})",
        attached.len(),
        programs.len(),
        attached.join(", ")
    )
}

fn record_text(r: &Record, rules: &[String]) -> String {
    let mut s = format!(
        "[{:>6}.{:06}] {} {} {}[{}/{}] vma {:#x}-{:#x} pgoff {:#x}",
        r.ts_ns / 1_000_000_000,
        r.ts_ns % 1_000_000_000 / 1000,
        r.hook,
        r.class,
        r.comm,
        r.tgid,
        r.pid,
        r.vm_start,
        r.vm_end,
        r.vm_pgoff,
    );
    // Writing to a String cannot fail.
    if let Some(before) = r.pgoff_before.filter(|b| *b != r.vm_pgoff) {
        let _ = write!(s, " (was {before:#x})");
    }
    let _ = write!(s, " addr {:#x}", r.addr);
    match r.pfn {
        Some(pfn) if r.hook.maps_pfns() => {
            let _ = write!(s, " pfn {pfn:#x} size {:#x}", r.size);
        }
        Some(pfn) => {
            let _ = write!(s, " pfn {pfn:#x} (vm_pgoff+off {:#x})", r.rule_pfn());
        }
        None => s.push_str(" pfn ?"),
    }
    let _ = write!(s, " ret {}", r.ret);
    if let Some(f) = &r.file {
        let _ = write!(s, " file {}", f.name);
        // The parent dentry names the PCI device of a BAR file; the root of
        // a filesystem (devtmpfs for /dev/mem) says nothing.
        if f.parent != "/" && !f.parent.is_empty() {
            let _ = write!(s, " in {}", f.parent);
        }
        if f.rdev != (DevNum { major: 0, minor: 0 }) {
            let _ = write!(s, " dev {}", f.rdev);
        }
    }
    if !rules.is_empty() {
        let _ = write!(s, " rules {}", rules.join(","));
    }
    s
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
    use pfnwatch_common::{Class, class};

    fn rules() -> RuleSet {
        RuleSet::new(
            crate::rules::RuleConfig::default(),
            crate::rules::Context {
                arch_pte_special: true,
            },
        )
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
            vm_flags: 0x400,
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
            stack: Vec::new(),
        }
    }

    #[test]
    fn text_shows_pgoff_rewrite_and_rules() {
        let line = Line::record(remap(), &rules()).render(Format::Text);
        assert!(
            line.starts_with("[    12.345678] remap_pfn_range pfnmap+cow+pfn_match trig[7/7]"),
            "{line}"
        );
        assert!(line.contains("pgoff 0xfd000 (was 0x0)"), "{line}");
        assert!(line.ends_with(" rules R1"), "{line}");
    }

    #[test]
    fn text_names_the_file_its_directory_and_device() {
        let mut r = remap();
        r.file = Some(crate::record::MappedFile {
            name: "resource0".into(),
            parent: "0000:00:02.0".into(),
            ino: 1,
            rdev: DevNum { major: 0, minor: 0 },
            sdev: DevNum {
                major: 0,
                minor: 20,
            },
        });
        let line = Line::record(r.clone(), &rules()).render(Format::Text);
        assert!(
            line.contains(" file resource0 in 0000:00:02.0 rules"),
            "{line}"
        );
        r.file = Some(crate::record::MappedFile {
            name: "mem".into(),
            parent: "/".into(),
            ino: 2,
            rdev: DevNum { major: 1, minor: 1 },
            sdev: DevNum { major: 0, minor: 5 },
        });
        let line = Line::record(r, &rules()).render(Format::Text);
        assert!(line.contains(" file mem dev 1:1 rules"), "{line}");
    }

    #[test]
    fn json_lines_round_trip() {
        let lines = [
            Line::record(remap(), &rules()),
            Line::Counts {
                counts: Counts::default(),
            },
        ];
        for line in lines {
            let json = line.render(Format::Json);
            assert!(!json.contains('\n'));
            assert_eq!(serde_json::from_str::<Line>(&json).unwrap(), line);
        }
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
