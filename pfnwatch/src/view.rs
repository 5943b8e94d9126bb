//! The one path every record takes in trace, record and replay: rules,
//! filters, the alert pipeline (duplicate collapsing, alerts file), the
//! capture file, output and the summary. Live and replayed records go
//! through the same code, so a replay shows what the live view showed.

use crate::alert::Clock;
use crate::capture::{self, Entry};
use crate::counters::Counts;
use crate::dedup::Dedup;
use crate::enrich::Enrichment;
use crate::filter::Filter;
use crate::output::{self, Format, Line};
use crate::pipeline::Pipeline;
use crate::record::Record;
use crate::rules::{RuleSet, Severity};
use crate::sinks::Sinks;
use crate::summary::Summary;
use anyhow::Result;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::time::Duration;

/// How records are shown and aggregated.
#[derive(Clone, Debug)]
pub struct ViewOptions {
    pub format: Format,
    /// Show each record's kernel call path.
    pub stack: bool,
    pub filter: Filter,
    /// Stop after this many records shown.
    pub count: Option<u64>,
    /// Repeats of an alert within this window collapse into one follow-up.
    pub dedup_window: Duration,
    /// Also write every alert as one JSON object per line to this file.
    pub alerts_file: Option<PathBuf>,
}

/// Whether to go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Go,
    /// `--count` reached, or the reader of the output went away.
    Stop,
}

pub struct Viewer<W: Write> {
    out: W,
    opts: ViewOptions,
    rules: RuleSet,
    clock: Clock,
    pipeline: Pipeline,
    capture: Option<capture::Writer>,
    summary: Summary,
    /// The output's reader is gone (a closed pipe): print nothing more.
    closed: bool,
}

impl<W: Write> Viewer<W> {
    pub fn new(
        out: W,
        opts: ViewOptions,
        rules: RuleSet,
        clock: Clock,
        capture: Option<capture::Writer>,
    ) -> Result<Viewer<W>> {
        let mut sinks = Sinks::new(opts.alerts_file.as_deref(), Severity::Info)?;
        // Alerts are shown on stdout with the records, not logged too.
        sinks.log = false;
        let pipeline = Pipeline::new(
            rules.clone(),
            None,
            Dedup::new(opts.dedup_window),
            sinks,
            clock,
        );
        Ok(Viewer {
            out,
            opts,
            rules,
            clock,
            pipeline,
            capture,
            summary: Summary::default(),
            closed: false,
        })
    }

    /// The capture's header, once the programs are attached.
    pub fn capture_header(&mut self, header: &capture::Header) -> Result<()> {
        match &mut self.capture {
            Some(c) => c.header(header),
            None => Ok(()),
        }
    }

    /// The ready line, and the column heads for people.
    pub fn ready(&mut self, ready: Line) -> Result<Flow> {
        self.emit(&ready)?;
        if self.opts.format == Format::Text {
            let header = output::header();
            self.write(&header)?;
        }
        Ok(self.flow())
    }

    /// One record from the kernel or a capture; `host` looks up its host
    /// context, only for records that pass the filters.
    pub fn record(
        &mut self,
        record: Record,
        host: impl FnOnce(&Record) -> Enrichment,
    ) -> Result<Flow> {
        if self.done() {
            return Ok(Flow::Stop);
        }
        let hits = self.rules.evaluate(&record);
        if !self.opts.filter.matches(&record, &hits) {
            self.summary.filtered += 1;
            return Ok(Flow::Go);
        }
        let host = host(&record);
        self.summary.shown(&record, &hits);
        if let Some(c) = &mut self.capture {
            c.record(&record, &host)?;
        }
        let line = Line::record(record.clone(), &hits, &host, &self.clock, self.opts.stack);
        self.emit(&line)?;
        let alerts = self.pipeline.record_with(&record, host)?;
        self.alerts(alerts)?;
        Ok(self.flow())
    }

    /// The kernel lost records: say so on the spot.
    pub fn lost(&mut self, lost: u64, total: u64) -> Result<Flow> {
        self.summary.lost += lost;
        if let Some(c) = &mut self.capture {
            c.entry(&Entry::Lost { lost, total })?;
        }
        self.emit(&Line::Lost { lost, total })?;
        Ok(self.flow())
    }

    pub fn counts(&mut self, counts: Counts) -> Result<Flow> {
        if let Some(c) = &mut self.capture {
            c.entry(&Entry::Counts {
                counts: counts.clone(),
            })?;
        }
        self.emit(&Line::Counts { counts })?;
        Ok(self.flow())
    }

    /// Closes duplicate windows that ended by `now_ns` (live mode's clock).
    pub fn expire(&mut self, now_ns: u64) -> Result<Flow> {
        let due = self.pipeline.expire(now_ns)?;
        self.alerts(due)?;
        Ok(self.flow())
    }

    /// Pending follow-ups, the capture's end line, and the summary.
    pub fn finish(mut self) -> Result<Summary> {
        let due = self.pipeline.finish()?;
        self.alerts(due)?;
        if let Some(c) = self.capture.take() {
            c.finish()?;
        }
        let summary = Line::Summary {
            summary: Box::new(self.summary.clone()),
        };
        self.emit(&summary)?;
        Ok(self.summary)
    }

    fn alerts(&mut self, alerts: Vec<crate::alert::Alert>) -> Result<()> {
        for alert in alerts {
            self.summary.alert(&alert);
            // People see the rule on the record's line and the alerts in
            // the summary; programs get each alert as it is let out.
            if self.opts.format == Format::Json {
                self.emit(&Line::Alert {
                    alert: Box::new(alert),
                })?;
            }
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.closed || self.opts.count.is_some_and(|n| self.summary.records >= n)
    }

    fn flow(&self) -> Flow {
        if self.done() { Flow::Stop } else { Flow::Go }
    }

    fn emit(&mut self, line: &Line) -> Result<()> {
        let text = line.render(self.opts.format);
        self.write(&text)
    }

    /// Writes one line and flushes; a closed pipe ends the output quietly,
    /// like other line tools.
    fn write(&mut self, text: &str) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        match writeln!(self.out, "{text}").and_then(|()| self.out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
        }
    }
}
