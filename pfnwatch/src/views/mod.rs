//! What people and programs see of the records: trace's and replay's
//! lines (text or JSON, `line.rs`, `text.rs`), the summary at the end
//! (`summary.rs`), and the capture file record writes and replay reads
//! (`capture.rs`). [`View`] is the sink that prints lines and keeps the
//! summary; the capture writer is a sink of its own.

pub mod capture;
pub mod line;
pub mod summary;
pub mod text;

use crate::kernel::counters::Counts;
use crate::pipeline::alert::{Alert, Clock};
use crate::pipeline::filter::Filter;
use crate::pipeline::{Outcome, Sink};
use anyhow::Result;
use line::{Format, Line};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::time::Duration;
use summary::Summary;

/// What trace, record and replay show, and how.
#[derive(Clone, Debug)]
pub struct ViewOptions {
    pub format: Format,
    /// Show each record's kernel call path.
    pub stack: bool,
    /// The pipeline's filters.
    pub filter: Filter,
    /// Stop after this many records shown.
    pub count: Option<u64>,
    /// Repeats of an alert within this window collapse into one follow-up.
    pub dedup_window: Duration,
    /// Also write every alert as one JSON object per line to this file.
    pub alerts_file: Option<PathBuf>,
}

/// Prints one line per record, loss and counter snapshot, the alerts
/// (JSON only: people see the rules on the record's line and the alerts
/// in the summary), and the summary at the end.
pub struct View<W: Write> {
    out: W,
    format: Format,
    stack: bool,
    count: Option<u64>,
    clock: Clock,
    summary: Summary,
    /// The output's reader is gone (a closed pipe): print nothing more.
    closed: bool,
}

impl<W: Write> View<W> {
    pub fn new(out: W, opts: &ViewOptions, clock: Clock) -> View<W> {
        View {
            out,
            format: opts.format,
            stack: opts.stack,
            count: opts.count,
            clock,
            summary: Summary::default(),
            closed: false,
        }
    }

    /// The ready line, and the column heads for people.
    pub fn ready(&mut self, ready: Line) -> Result<()> {
        self.emit(&ready)?;
        if self.format == Format::Text {
            self.write(&text::header())?;
        }
        Ok(())
    }

    /// `--count` reached, or the reader of the output went away.
    pub fn done(&self) -> bool {
        self.closed || self.count.is_some_and(|n| self.summary.records >= n)
    }

    /// The summary line; `filtered` counts the records the filters dropped.
    pub fn finish(mut self, filtered: u64) -> Result<Summary> {
        self.summary.filtered = filtered;
        let summary = Line::Summary {
            summary: Box::new(self.summary.clone()),
        };
        self.emit(&summary)?;
        Ok(self.summary)
    }

    fn emit(&mut self, line: &Line) -> Result<()> {
        let text = line.render(self.format);
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

impl<W: Write> Sink for View<W> {
    fn outcome(&mut self, o: &Outcome) -> Result<()> {
        self.summary.shown(&o.record, &o.hits);
        let line = Line::record(o, &self.clock, self.stack);
        self.emit(&line)
    }

    fn alert(&mut self, alert: &Alert) -> Result<()> {
        self.summary.alert(alert);
        if self.format == Format::Json {
            self.emit(&Line::Alert {
                alert: Box::new(alert.clone()),
            })?;
        }
        Ok(())
    }

    fn lost(&mut self, lost: u64, total: u64) -> Result<()> {
        // A capture's numbers are any the file says: saturate, never wrap.
        self.summary.lost = self.summary.lost.saturating_add(lost);
        self.emit(&Line::Lost { lost, total })
    }

    fn counts(&mut self, counts: &Counts) -> Result<()> {
        self.emit(&Line::Counts {
            counts: counts.clone(),
        })
    }
}
