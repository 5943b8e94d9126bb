//! The lines trace, record and replay print: one per item, as one JSON
//! object with the stable schema of docs/trace-json.md, or as text for
//! people (`text.rs`).

use super::summary::Summary;
use super::text;
use crate::enrich::Enrichment;
use crate::kernel::counters::Counts;
use crate::kernel::decode::{DevNum, Record};
use crate::kernel::loader::ProgramReport;
use crate::pipeline::Outcome;
use crate::pipeline::alert::{Alert, Clock};
use crate::rules::{RuleId, Severity};
use pfnwatch_common::vm_flags;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
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
        rules: Vec<RuleId>,
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
    /// Driver, cgroup, container, and with `--stack` the call path.
    #[serde(flatten)]
    pub host: Enrichment,
    /// The most severe of `hits`; null when no rule matches.
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hits: Vec<RuleHit>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHit {
    pub rule: RuleId,
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

/// [`wall_time`]'s time of day, HH:MM:SS.ffffff, appended to `out`
/// without the date (text lines show no more, and it costs no allocation).
pub fn day_time(clock: &Clock, mono_ns: u64, out: &mut String) {
    use super::numbers::two;
    let real = u64::try_from(i128::from(mono_ns) + clock.offset_ns()).unwrap_or(0);
    let secs = real / 1_000_000_000;
    let micros = real % 1_000_000_000 / 1000;
    let day = secs % 86_400;
    two(out, day / 3600);
    out.push(':');
    two(out, day / 60 % 60);
    out.push(':');
    two(out, day % 60);
    out.push('.');
    two(out, micros / 10_000);
    two(out, micros / 100 % 100);
    two(out, micros % 100);
}

impl Line {
    /// A record line. `stack`: show the call path, by symbol (kernel
    /// addresses never leave pfnwatch).
    pub fn record(outcome: &Outcome, clock: &Clock, stack: bool) -> Line {
        let Outcome { record, hits, host } = outcome;
        let record = record.without_kernel_addresses();
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
            host: Enrichment {
                handlers: None,
                stack: if stack {
                    host.stack.clone()
                } else {
                    Arc::default()
                },
                ..host.clone()
            },
            severity: hits.iter().map(|h| h.severity).max(),
            hits: hits
                .iter()
                .map(|h| RuleHit {
                    rule: h.rule.id,
                    name: h.rule.name.to_owned(),
                    severity: h.severity,
                })
                .collect(),
        };
        Line::Record {
            record: Box::new(record),
            rules: hits.iter().map(|h| h.rule.id).collect(),
            view: Box::new(view),
        }
    }

    /// The line as printed; text carries colour, which the caller's
    /// stream strips when it is not a terminal.
    pub fn render(&self, format: Format) -> String {
        self.render_styled(format, true)
    }

    /// [`Line::render`], text in colour only when `color`.
    pub fn render_styled(&self, format: Format, color: bool) -> String {
        match format {
            // Serializing these plain data types cannot fail.
            Format::Json => serde_json::to_string(self).unwrap_or_default(),
            Format::Text => text::render(self, color),
        }
    }
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::{Context, RuleConfig, RuleSet};
    use pfnwatch_common::{Class, Hook, class};

    pub fn rules() -> RuleSet {
        RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        )
    }

    /// 2023-11-14T22:13:20Z at monotonic 0.
    pub fn clock() -> Clock {
        Clock::with_offset(1_700_000_000_000_000_000)
    }

    pub fn remap() -> Record {
        Record {
            ts_ns: 12_345_678_901,
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
            level: pfnwatch_common::Level::Pte,
            stack: vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100],
            ..Record::new(
                Hook::RemapPfnRange,
                Class(class::PFNMAP | class::COW | class::PFN_MATCH),
            )
        }
    }

    pub fn line(r: Record, host: &Enrichment, stack: bool) -> Line {
        let hits = rules().evaluate(&r);
        let outcome = Outcome {
            record: r,
            hits,
            host: host.clone(),
        };
        Line::record(&outcome, &clock(), stack)
    }

    /// Four device lookups, one EINVAL remap, two records lost.
    pub fn counts() -> Counts {
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

    pub fn plain(text: &str) -> String {
        anstream::adapter::strip_str(text).to_string()
    }

    #[test]
    fn json_record_carries_the_documented_fields() {
        let host = Enrichment {
            cgroup: Some("/system.slice/x.service".into()),
            container: None,
            driver: Some("mem".into()),
            handlers: None,
            stack: vec!["mmap_mem+0x9".to_owned()].into(),
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
        // By symbol only: kernel addresses are KASLR secrets.
        assert!(v.get("stack").is_none(), "{json}");
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
}
