//! Records in, alerts out: rules, host context, duplicate collapsing and
//! the sinks, in the order the daemon (and replay) apply them.

use crate::alert::{Alert, Clock};
use crate::dedup::Dedup;
use crate::enrich::{Enricher, Enrichment};
use crate::record::Record;
use crate::rules::RuleSet;
use crate::sinks::Sinks;
use anyhow::Result;
use std::collections::BTreeMap;

pub struct Pipeline {
    pub rules: RuleSet,
    /// None when replaying a capture whose host is not this one.
    enricher: Option<Enricher>,
    dedup: Dedup,
    sinks: Sinks,
    clock: Clock,
    /// Occurrences per (rule, severity), for summaries and metrics.
    pub totals: BTreeMap<(String, String), u64>,
}

impl Pipeline {
    pub fn new(
        rules: RuleSet,
        enricher: Option<Enricher>,
        dedup: Dedup,
        sinks: Sinks,
        clock: Clock,
    ) -> Pipeline {
        Pipeline {
            rules,
            enricher,
            dedup,
            sinks,
            clock,
            totals: BTreeMap::new(),
        }
    }

    /// Evaluates one record; emits what is due. Returns the alerts emitted.
    pub fn record(&mut self, r: &Record) -> Result<Vec<Alert>> {
        if self.rules.evaluate(r).is_empty() {
            return self.expire(r.ts_ns);
        }
        let host = match &mut self.enricher {
            Some(e) => e.enrich(r),
            None => Enrichment::default(),
        };
        self.record_with(r, host)
    }

    /// The same with host context looked up by the caller: trace shows it
    /// on the record's line too, and replay takes it from the capture.
    pub fn record_with(&mut self, r: &Record, host: Enrichment) -> Result<Vec<Alert>> {
        let hits = self.rules.evaluate(r);
        if hits.is_empty() {
            return self.expire(r.ts_ns);
        }
        let mut emitted = Vec::new();
        for hit in hits {
            *self
                .totals
                .entry((hit.rule.id.to_owned(), hit.severity.to_string()))
                .or_default() += 1;
            let alert = Alert::new(hit, r, host.clone(), &self.clock);
            for due in self.dedup.push(alert) {
                self.sinks.emit(&due)?;
                emitted.push(due);
            }
        }
        Ok(emitted)
    }

    /// Closes duplicate windows that ended by `now_ns` (CLOCK_MONOTONIC).
    pub fn expire(&mut self, now_ns: u64) -> Result<Vec<Alert>> {
        let due = self.dedup.expire(now_ns);
        for a in &due {
            self.sinks.emit(a)?;
        }
        Ok(due)
    }

    /// A configuration reload: alerts go to `sinks` from now on (the old
    /// ones are returned, to be dropped).
    pub fn replace_sinks(&mut self, sinks: Sinks) -> Sinks {
        std::mem::replace(&mut self.sinks, sinks)
    }

    /// A configuration reload with a new duplicate window: the follow-ups
    /// pending under the old window go out first; returns them.
    pub fn set_dedup_window(&mut self, window: std::time::Duration) -> Result<Vec<Alert>> {
        let due = self.finish()?;
        self.dedup = Dedup::new(window);
        Ok(due)
    }

    /// At the end: every pending follow-up.
    pub fn finish(&mut self) -> Result<Vec<Alert>> {
        let due = self.dedup.flush();
        for a in &due {
            self.sinks.emit(a)?;
        }
        Ok(due)
    }
}
