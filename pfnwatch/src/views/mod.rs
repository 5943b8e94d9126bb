//! What people and programs see of the records: trace's and replay's
//! lines (text or JSON, `line.rs`, `text.rs`), the summary at the end
//! (`summary.rs`), and the capture file record writes and replay reads
//! (`capture.rs`). [`View`] is the sink that prints lines and keeps the
//! summary; the capture writer is a sink of its own.

pub mod capture;
mod json;
pub mod line;
pub mod numbers;
pub mod summary;
pub mod text;

use crate::kernel::counters::Counts;
use crate::pipeline::alert::{Alert, Clock};
use crate::pipeline::filter::Filter;
use crate::pipeline::{Outcome, Sink};
use crate::rules::RuleId;
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
    /// Text with colour codes (a terminal's stream keeps them, another
    /// strips them); false writes plain text, no codes to strip.
    pub color: bool,
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
    color: bool,
    /// A record's text line and its time, its JSON line; reused.
    buf: String,
    json: json::RecordLines,
    time: String,
    /// Classes as text, formatted once each (by the class's bits).
    classes: Vec<Option<String>>,
    /// Flush after every line: someone watches trace live. A replay is
    /// flushed at the end (a write per line would cost more than the rest).
    flush_lines: bool,
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
            color: opts.color,
            buf: String::new(),
            json: json::RecordLines::default(),
            time: String::new(),
            classes: Vec::new(),
            flush_lines: true,
            closed: false,
        }
    }

    /// Lines are flushed at the end only (and when the buffer is full).
    pub fn buffered(mut self) -> View<W> {
        self.flush_lines = false;
        self
    }

    /// The ready line, and the column heads for people.
    pub fn ready(&mut self, ready: Line) -> Result<()> {
        self.emit(&ready)?;
        if self.format == Format::Text {
            self.write(&text::header(self.color))?;
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
        self.flush()?;
        Ok(self.summary)
    }

    fn emit(&mut self, line: &Line) -> Result<()> {
        let text = line.render_styled(self.format, self.color);
        self.write(&text)
    }

    /// Writes one line and flushes; a closed pipe ends the output quietly,
    /// like other line tools.
    fn write(&mut self, text: &str) -> Result<()> {
        self.write_bytes(text.as_bytes())
    }

    fn write_bytes(&mut self, line: &[u8]) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let written = self
            .out
            .write_all(line)
            .and_then(|()| self.out.write_all(b"\n"));
        self.check(written)?;
        if self.flush_lines {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out what [`View::buffered`] holds.
    pub fn flush(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.check(flushed)
    }

    fn check(&mut self, done: std::io::Result<()>) -> Result<()> {
        match done {
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
        if self.format == Format::Json {
            let mut lines = std::mem::take(&mut self.json);
            let written = self.write_bytes(lines.record(o, &self.clock, self.stack));
            self.json = lines;
            return written;
        }
        // Text straight from the outcome: what Line::record would hold.
        let mut time = std::mem::take(&mut self.time);
        time.clear();
        line::day_time(&self.clock, o.record.ts_ns, &mut time);
        let rules: Vec<RuleId> = o.hits.iter().map(|h| h.rule.id).collect();
        let slot = usize::from(o.record.class.0);
        // Every class the kernel can send is below SLOTS; a capture's
        // class is parsed from names, so it is too.
        if slot < pfnwatch_common::class::SLOTS {
            if self.classes.len() <= slot {
                self.classes.resize(slot + 1, None);
            }
            if self.classes[slot].is_none() {
                self.classes[slot] = Some(o.record.class.to_string());
            }
        }
        let extra = text::Extra {
            time: &time,
            severity: o.hits.iter().map(|h| h.severity).max(),
            rules: &rules,
            class: self.classes.get(slot).and_then(|c| c.as_deref()),
            driver: o.host.driver.as_deref(),
            handlers: None,
            stack: if self.stack { &o.host.stack } else { &[] },
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        text::record_into(&mut buf, &o.record, &extra, self.color);
        let written = self.write(&buf);
        self.buf = buf;
        self.time = time;
        written
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
