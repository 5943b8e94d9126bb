//! What a trace, record or replay saw, totalled for the line printed when
//! it stops: records per hook, class and rule, and the alerts they raised.

use crate::kernel::decode::Record;
use crate::pipeline::alert::Alert;
use crate::rules::{Hit, RuleId, Severity};
use pfnwatch_common::{Class, Hook};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Records shown: those that passed the filters.
    pub records: u64,
    /// Records that reached user space but a filter dropped.
    pub filtered: u64,
    /// Records the kernel lost (ring buffer full) while this ran.
    pub lost: u64,
    /// Shown records per hook.
    pub hooks: BTreeMap<Hook, u64>,
    /// Shown records per hook and class.
    pub classes: BTreeMap<Hook, BTreeMap<Class, u64>>,
    /// Shown records matching each rule.
    pub rules: BTreeMap<RuleId, u64>,
    /// The alerts raised, after duplicate collapsing, one entry per rule,
    /// process and file; at most [`ALERT_GROUPS`].
    pub alerts: Vec<AlertGroup>,
    /// Rule hits in alerts of groups past [`ALERT_GROUPS`]: counted, not
    /// listed (a capture of millions of processes must not grow replay).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub alerts_unlisted: u64,
}

/// Alert groups a summary lists, like dedup's windows: a bound on memory.
pub const ALERT_GROUPS: usize = 4096;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Alerts of one rule for one process and file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertGroup {
    pub rule: RuleId,
    pub name: String,
    pub severity: Severity,
    pub tgid: u32,
    pub comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Rule hits these alerts stand for.
    pub occurrences: u64,
    /// Alert lines emitted (first occurrences and follow-ups).
    pub lines: u64,
}

impl AlertGroup {
    fn same(&self, a: &Alert) -> bool {
        self.rule == a.rule
            && self.severity == a.severity
            && self.tgid == a.tgid
            && self.comm == a.comm
            && self.file == a.file
            && self.device == a.device
            && self.driver == a.driver
    }
}

impl Summary {
    /// A record that passed the filters, with the rules it matched.
    pub fn shown(&mut self, r: &Record, hits: &[Hit]) {
        self.records += 1;
        *self.hooks.entry(r.hook).or_default() += 1;
        *self
            .classes
            .entry(r.hook)
            .or_default()
            .entry(r.class)
            .or_default() += 1;
        for hit in hits {
            *self.rules.entry(hit.rule.id).or_default() += 1;
        }
    }

    pub fn alert(&mut self, a: &Alert) {
        let full = self.alerts.len() >= ALERT_GROUPS;
        match self.alerts.iter_mut().find(|g| g.same(a)) {
            Some(g) => {
                g.occurrences = g.occurrences.saturating_add(a.count);
                g.lines += 1;
                return;
            }
            None if full => {
                self.alerts_unlisted = self.alerts_unlisted.saturating_add(a.count);
                return;
            }
            None => self.alerts.push(AlertGroup {
                rule: a.rule,
                name: a.name.clone(),
                severity: a.severity,
                tgid: a.tgid,
                comm: a.comm.clone(),
                file: a.file.clone(),
                device: a.device.clone(),
                driver: a.driver.clone(),
                occurrences: a.count,
                lines: 1,
            }),
        }
        // Most severe first, then by rule and process: stable output
        // (sorted when a group comes in; counts do not move them).
        self.alerts.sort_by(|x, y| {
            (std::cmp::Reverse(x.severity), &x.rule, x.tgid, &x.file).cmp(&(
                std::cmp::Reverse(y.severity),
                &y.rule,
                y.tgid,
                &y.file,
            ))
        });
    }

    /// The human form: one heading line, then one line per kind of total.
    pub fn text(&self) -> String {
        let mut s = format!(
            "summary: {} record{} shown, {} filtered out, {} lost",
            self.records,
            if self.records == 1 { "" } else { "s" },
            self.filtered,
            self.lost
        );
        // Writing to a String cannot fail.
        let hooks: Vec<String> = self.hooks.iter().map(|(h, n)| format!("{h} {n}")).collect();
        if !hooks.is_empty() {
            let _ = write!(s, "\n  hooks   {}", hooks.join(", "));
        }
        for (i, (hook, classes)) in self.classes.iter().enumerate() {
            let list: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let head = if i == 0 { "classes" } else { "" };
            let _ = write!(s, "\n  {head:<7} {hook}: {}", list.join(", "));
        }
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|(id, n)| format!("{id} {} {n}", id.name()))
            .collect();
        if !rules.is_empty() {
            let _ = write!(s, "\n  rules   {}", rules.join(", "));
        }
        for (i, g) in self.alerts.iter().enumerate() {
            let head = if i == 0 { "alerts" } else { "" };
            let _ = write!(
                s,
                "\n  {head:<7} {} {} {}: {}[{}]",
                g.severity, g.rule, g.name, g.comm, g.tgid
            );
            for (label, value) in [("file", &g.file), ("dev", &g.device), ("driver", &g.driver)] {
                if let Some(v) = value {
                    let _ = write!(s, " {label} {v}");
                }
            }
            let _ = write!(
                s,
                " x{} ({} line{})",
                g.occurrences,
                g.lines,
                if g.lines == 1 { "" } else { "s" }
            );
        }
        if self.alerts_unlisted > 0 {
            let _ = write!(
                s,
                "\n          and {} more rule hits in alerts past the first {ALERT_GROUPS} groups",
                self.alerts_unlisted
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::Enrichment;
    use crate::pipeline::alert::Clock;
    use crate::rules::{Context, RuleConfig, RuleSet};

    fn remap() -> Record {
        crate::kernel::decode::sample_remap()
    }

    #[test]
    fn totals_per_hook_class_rule_and_alert_group() {
        let rules = RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        );
        let r = remap();
        let hits = rules.evaluate(&r);
        let mut s = Summary::default();
        s.shown(&r, &hits);
        s.shown(&r, &hits);
        let first = Alert::new(hits[0], &r, Enrichment::default(), &Clock::with_offset(0));
        let follow_up = Alert {
            count: 3,
            repeat: true,
            ..first.clone()
        };
        s.alert(&first);
        s.alert(&follow_up);
        s.filtered = 4;
        assert_eq!(s.records, 2);
        assert_eq!(s.hooks[&Hook::RemapPfnRange], 2);
        assert_eq!(s.classes[&Hook::RemapPfnRange][&r.class], 2);
        assert_eq!(s.rules[&RuleId::R1], 2);
        assert_eq!(s.alerts.len(), 1);
        assert_eq!((s.alerts[0].occurrences, s.alerts[0].lines), (4, 2));
        let text = s.text();
        assert!(
            text.starts_with("summary: 2 records shown, 4 filtered out, 0 lost"),
            "{text}"
        );
        assert!(text.contains("\n  hooks   remap_pfn_range 2"), "{text}");
        assert!(
            text.contains("\n  classes remap_pfn_range: pfnmap+cow+pfn_match 2"),
            "{text}"
        );
        assert!(
            text.contains("\n  rules   R1 cow_pfnmap_mapping 2"),
            "{text}"
        );
        assert!(
            text.contains("\n  alerts  info R1 cow_pfnmap_mapping: trig[7] x4 (2 lines)"),
            "{text}"
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
        assert_eq!(
            Summary::default().text(),
            "summary: 0 records shown, 0 filtered out, 0 lost"
        );
    }

    #[test]
    fn alert_groups_are_bounded() {
        let r = remap();
        let rules = RuleSet::new(
            RuleConfig::default(),
            Context {
                arch_pte_special: true,
            },
        );
        let hit = rules.evaluate(&r)[0];
        let mut s = Summary::default();
        for tgid in 0..(ALERT_GROUPS as u32 + 100) {
            let mut a = Alert::new(hit, &r, Enrichment::default(), &Clock::with_offset(0));
            a.tgid = tgid;
            s.alert(&a);
        }
        assert_eq!((s.alerts.len(), s.alerts_unlisted), (ALERT_GROUPS, 100));
        assert!(
            s.text()
                .ends_with("and 100 more rule hits in alerts past the first 4096 groups")
        );
    }
}
