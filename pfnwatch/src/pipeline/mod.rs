//! The one path every record takes, whichever command reads it (run,
//! trace, record, replay): the filters, the rules (evaluated once), host
//! context (looked up once, or taken from a capture), then duplicate
//! collapsing. What comes out is an [`Outcome`] per record and the alerts
//! let out, handed to every [`Sink`] in the order given.

pub mod alert;
pub mod dedup;
pub mod filter;

use crate::enrich::{self, Enricher, Enrichment};
use crate::kernel::counters::Counts;
use crate::kernel::decode::Record;
use crate::rules::{Hit, RuleSet};
use alert::{Alert, Clock};
use anyhow::Result;
use dedup::Dedup;
use filter::Filter;
use std::time::Duration;

/// A record that passed the filters, with what user space made of it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub record: Record,
    /// The rules it breaks, most severe first.
    pub hits: Vec<Hit>,
    pub host: Enrichment,
}

/// Where outcomes go: logs, the alerts file, metrics, the views, captures.
/// Each sees everything and takes what it shows.
pub trait Sink {
    fn outcome(&mut self, _outcome: &Outcome) -> Result<()> {
        Ok(())
    }
    /// An alert as duplicate collapsing lets it out: a rule's first hit, or
    /// a follow-up counting the repeats.
    fn alert(&mut self, _alert: &Alert) -> Result<()> {
        Ok(())
    }
    /// The kernel lost records (ring buffer full): `lost` now, `total` so far.
    fn lost(&mut self, _lost: u64, _total: u64) -> Result<()> {
        Ok(())
    }
    /// The kernel's counters at this point.
    fn counts(&mut self, _counts: &Counts) -> Result<()> {
        Ok(())
    }
}

/// An optional sink (an alerts file that was not asked for) is no sink.
impl<S: Sink> Sink for Option<S> {
    fn outcome(&mut self, o: &Outcome) -> Result<()> {
        self.as_mut().map_or(Ok(()), |s| s.outcome(o))
    }
    fn alert(&mut self, a: &Alert) -> Result<()> {
        self.as_mut().map_or(Ok(()), |s| s.alert(a))
    }
    fn lost(&mut self, lost: u64, total: u64) -> Result<()> {
        self.as_mut().map_or(Ok(()), |s| s.lost(lost, total))
    }
    fn counts(&mut self, c: &Counts) -> Result<()> {
        self.as_mut().map_or(Ok(()), |s| s.counts(c))
    }
}

/// Where host context comes from.
pub enum Hosts {
    /// Looked up on this host, once per record.
    Live(Box<Enricher>),
    /// Carried by each record (a capture from another host).
    Given,
}

pub struct Pipeline {
    pub rules: RuleSet,
    filter: Filter,
    hosts: Hosts,
    dedup: Dedup,
    clock: Clock,
    /// Records a filter dropped.
    pub filtered: u64,
}

impl Pipeline {
    pub fn new(
        rules: RuleSet,
        filter: Filter,
        hosts: Hosts,
        dedup_window: Duration,
        clock: Clock,
    ) -> Pipeline {
        Pipeline {
            rules,
            filter,
            hosts,
            dedup: Dedup::new(dedup_window),
            clock,
            filtered: 0,
        }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// One record, with its host context when the source carries it.
    /// Returns whether it passed the filters.
    pub fn feed(
        &mut self,
        record: Record,
        given: Option<Enrichment>,
        sinks: &mut [&mut dyn Sink],
    ) -> Result<bool> {
        self.feed_and_return(record, given, sinks)
            .map(|(passed, _, _)| passed)
    }

    /// [`Pipeline::feed`], handing the record and its host context back
    /// when done, for a source that reuses their buffers (replay).
    pub fn feed_and_return(
        &mut self,
        record: Record,
        given: Option<Enrichment>,
        sinks: &mut [&mut dyn Sink],
    ) -> Result<(bool, Record, Option<Enrichment>)> {
        let hits = self.rules.evaluate(&record);
        if !self.filter.matches(&record, &hits) {
            self.filtered += 1;
            return Ok((false, record, given));
        }
        let host = match (given, &mut self.hosts) {
            // A capture of an older pfnwatch may hold the BPF frames still.
            (Some(host), _) => Enrichment {
                stack: enrich::callers(host.stack, record.hook.function()),
                ..host
            },
            (None, Hosts::Live(enricher)) => enricher.enrich(&record),
            (None, Hosts::Given) => Enrichment::default(),
        };
        let outcome = Outcome { record, hits, host };
        for sink in sinks.iter_mut() {
            sink.outcome(&outcome)?;
        }
        let now = outcome.record.ts_ns;
        let mut due = self.dedup.expire(now);
        for hit in &outcome.hits {
            let alert = Alert::new(*hit, &outcome.record, outcome.host.clone(), &self.clock);
            due.extend(self.dedup.push(alert));
        }
        alerts(sinks, &due)?;
        Ok((true, outcome.record, Some(outcome.host)))
    }

    /// Closes duplicate windows that ended by `now_ns` (CLOCK_MONOTONIC).
    pub fn expire(&mut self, now_ns: u64, sinks: &mut [&mut dyn Sink]) -> Result<()> {
        let due = self.dedup.expire(now_ns);
        alerts(sinks, &due)
    }

    /// A configuration reload with a new duplicate window: the follow-ups
    /// pending under the old window go out first.
    pub fn set_dedup_window(
        &mut self,
        window: Duration,
        sinks: &mut [&mut dyn Sink],
    ) -> Result<()> {
        self.finish(sinks)?;
        self.dedup = Dedup::new(window);
        Ok(())
    }

    /// At the end: every pending follow-up.
    pub fn finish(&mut self, sinks: &mut [&mut dyn Sink]) -> Result<()> {
        let due = self.dedup.flush();
        alerts(sinks, &due)
    }
}

fn alerts(sinks: &mut [&mut dyn Sink], due: &[Alert]) -> Result<()> {
    for alert in due {
        for sink in sinks.iter_mut() {
            sink.alert(alert)?;
        }
    }
    Ok(())
}

/// The kernel lost records: every sink hears it.
pub fn lost(sinks: &mut [&mut dyn Sink], lost: u64, total: u64) -> Result<()> {
    sinks.iter_mut().try_for_each(|s| s.lost(lost, total))
}

/// The kernel's counters: every sink hears them.
pub fn counts(sinks: &mut [&mut dyn Sink], counts: &Counts) -> Result<()> {
    sinks.iter_mut().try_for_each(|s| s.counts(counts))
}
