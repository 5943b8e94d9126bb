//! An alert: a rule a driver broke, with everything a reader needs to find
//! the driver — process, cgroup, file, device and driver, the vma, the pfn
//! arithmetic, and the kernel call path.

use crate::enrich::Enrichment;
use crate::kernel::decode::Record;
use crate::printable::{prefix, printable};
use crate::rules::{Hit, RuleId, Severity};
use pfnwatch_common::{Class, Hook, vm_flags};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: RuleId,
    /// The rule's name, for readers of the JSON.
    pub name: String,
    pub severity: Severity,
    /// Wall-clock time of the first occurrence (RFC 3339).
    pub time: String,
    /// CLOCK_MONOTONIC of the first and last occurrence.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Occurrences this line stands for.
    pub count: u64,
    /// A follow-up counting the duplicates after the first line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    pub hook: Hook,
    pub class: Class,
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The device node's major:minor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The vma's fault and the file's mmap handler by symbol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handlers: Option<String>,
    pub vm_start: u64,
    pub vm_end: u64,
    /// The inventory's id of the vma (0: a vma it did not see created).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vma_id: u64,
    pub vm_flags: u64,
    pub vm_flags_names: Vec<String>,
    pub addr: u64,
    pub pfn: Option<u64>,
    pub vm_pgoff: u64,
    /// vm_pgoff + page offset: the pfn the remap rule predicts here.
    pub expected_pfn: u64,
    pub stack: Vec<String>,
    pub explanation: String,
}

impl Alert {
    pub fn new(hit: Hit, r: &Record, host: Enrichment, clock: &Clock) -> Alert {
        let file = r.file.as_ref();
        Alert {
            rule: hit.rule.id,
            name: hit.rule.name.to_owned(),
            severity: hit.severity,
            time: clock.rfc3339(r.ts_ns),
            first_ns: r.ts_ns,
            last_ns: r.ts_ns,
            count: 1,
            repeat: false,
            hook: r.hook,
            class: r.class,
            pid: r.pid,
            tgid: r.tgid,
            comm: r.comm.clone(),
            cgroup_id: r.cgroup_id,
            cgroup: host.cgroup,
            container: host.container,
            file: file.map(|f| match f.parent.as_str() {
                "/" | "" => f.name.clone(),
                parent => format!("{parent}/{}", f.name),
            }),
            device: file
                .filter(|f| f.rdev.major != 0 || f.rdev.minor != 0)
                .map(|f| f.rdev.to_string()),
            driver: host.driver,
            handlers: host.handlers,
            vm_start: r.vm_start,
            vm_end: r.vm_end,
            vma_id: r.vma_id,
            vm_flags: r.vm_flags,
            vm_flags_names: vm_flags::names(r.vm_flags).map(str::to_owned).collect(),
            addr: r.addr,
            pfn: r.pfn,
            vm_pgoff: r.vm_pgoff,
            expected_pfn: r.rule_pfn(),
            stack: host.stack.to_vec(),
            explanation: hit.rule.explanation.to_owned(),
        }
    }

    /// One line for logs and terminals.
    pub fn summary(&self) -> String {
        let pfn = self.pfn.map_or("?".to_owned(), |p| format!("{p:#x}"));
        let mut s = format!(
            "{} {} {}: {} {} in {}[{}] vma {:#x}-{:#x} ({}) pfn {pfn} vm_pgoff+off {:#x}",
            self.severity,
            self.rule,
            self.name,
            self.hook,
            self.class,
            printable(&self.comm),
            self.tgid,
            self.vm_start,
            self.vm_end,
            self.vm_flags_names.join("|"),
            self.expected_pfn,
        );
        if let Some(f) = &self.file {
            s.push_str(&format!(" file {}", printable(f)));
        }
        if let Some(d) = &self.device {
            s.push_str(&format!(" dev {d}"));
        }
        if let Some(d) = &self.driver {
            s.push_str(&format!(" driver {}", printable(d)));
        }
        if let Some(c) = &self.container {
            s.push_str(&format!(" container {}", printable(prefix(c, 12))));
        }
        if let Some(h) = &self.handlers {
            s.push_str(&format!(" {}", printable(h)));
        }
        if let Some(top) = self.stack.first() {
            s.push_str(&format!(" via {}", printable(top)));
        }
        if self.count > 1 || self.repeat {
            s.push_str(&format!(" (x{})", self.count));
        }
        s
    }
}

/// Turns CLOCK_MONOTONIC (record time) into wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// realtime - monotonic, in ns.
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
        }
    }

    /// For replays: a fixed offset recorded with the capture.
    pub fn with_offset(offset_ns: i128) -> Clock {
        Clock { offset_ns }
    }

    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    pub fn rfc3339(&self, mono_ns: u64) -> String {
        let real = i128::from(mono_ns) + self.offset_ns;
        let time = u64::try_from(real)
            .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
            .unwrap_or(UNIX_EPOCH);
        humantime::format_rfc3339_millis(time).to_string()
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Wall-clock now, for sinks that stamp their own lines.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Context, RuleConfig, RuleSet};
    use pfnwatch_common::class;

    pub fn record() -> Record {
        Record {
            ts_ns: 5_000_000_000,
            pid: 42,
            tgid: 42,
            comm: "victim".into(),
            cgroup_id: 7,
            vm_flags: vm_flags::VM_PFNMAP | vm_flags::VM_IO | vm_flags::VM_MAYWRITE,
            vm_start: 0x7f00_0000_0000,
            vm_end: 0x7f00_0000_4000,
            vm_pgoff: 0xfd001,
            addr: 0x7f00_0000_1000,
            pfn: Some(0xfd001),
            size: 0x1000,
            level: pfnwatch_common::Level::Pte,
            file: Some(crate::kernel::decode::test_file(
                "pfnw-pgoff",
                "/",
                (10, 121),
            )),
            stack: vec![1, 2],
            ..Record::new(
                Hook::VmNormalPage,
                Class(class::PFNMAP | class::COW | class::SPECIAL | class::NO_PAGE),
            )
        }
    }

    #[test]
    fn carries_what_a_reader_needs() {
        let rules = RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        );
        let r = record();
        let hit = rules.evaluate(&r)[0];
        assert_eq!(hit.rule.id, RuleId::R8);
        let host = Enrichment {
            cgroup: Some("/system.slice/x.service".into()),
            container: None,
            driver: Some("misc".into()),
            handlers: None,
            // As host context hands it over: from the first caller.
            stack: vec![
                "zap_pte_range+0x1f0".to_owned(),
                "unmap_page_range+0x2".to_owned(),
            ]
            .into(),
        };
        let a = Alert::new(
            hit,
            &r,
            host,
            &Clock::with_offset(1_700_000_000_000_000_000),
        );
        assert_eq!(a.time, "2023-11-14T22:13:25.000Z");
        assert_eq!(a.expected_pfn, 0xfd002);
        assert_eq!(a.device.as_deref(), Some("10:121"));
        assert_eq!(a.file.as_deref(), Some("pfnw-pgoff"));
        assert_eq!(a.vm_flags_names, ["VM_MAYWRITE", "VM_PFNMAP", "VM_IO"]);
        let line = a.summary();
        assert!(
            line.starts_with("info R8 pgoff_rule_broken: vm_normal_page"),
            "{line}"
        );
        assert!(line.contains("pfn 0xfd001 vm_pgoff+off 0xfd002"), "{line}");
        assert!(
            line.contains("driver misc via zap_pte_range+0x1f0"),
            "{line}"
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Alert>(&json).unwrap(), a);
    }

    #[test]
    fn hostile_names_stay_on_one_line() {
        let rules = RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        );
        // A process can name itself anything, a cgroup too.
        let r = Record {
            comm: "x\ncritical R6 \u{1b}[2J".into(),
            ..record()
        };
        let hit = rules.evaluate(&r)[0];
        let host = Enrichment {
            container: Some("é".repeat(20)),
            ..Enrichment::default()
        };
        let a = Alert::new(hit, &r, host, &Clock::with_offset(0));
        let line = a.summary();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(line.contains("x\\ncritical R6 \\u{1b}[2J[42]"), "{line}");
        assert!(
            line.contains(&format!("container {}", "é".repeat(12))),
            "{line}"
        );
        // JSON keeps the name as it is, escaped by JSON's rules.
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Alert>(&json).unwrap().comm, r.comm);
    }
}
