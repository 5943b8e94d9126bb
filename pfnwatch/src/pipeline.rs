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
        let hits = self.rules.evaluate(r);
        if hits.is_empty() {
            return self.expire(r.ts_ns);
        }
        let host = match &mut self.enricher {
            Some(e) => e.enrich(r),
            None => Enrichment::default(),
        };
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

    /// At the end: every pending follow-up.
    pub fn finish(&mut self) -> Result<Vec<Alert>> {
        let due = self.dedup.flush();
        for a in &due {
            self.sinks.emit(a)?;
        }
        Ok(due)
    }
}
