//! `pfnwatch trace` and `pfnwatch record`: the live view, one line per
//! record as it happens, optionally saved to a capture file.

use crate::enrich::Enricher;
use crate::kernel::counters::Counts;
use crate::kernel::decode::monotonic_ns;
use crate::kernel::facts;
use crate::kernel::session::{Session, SessionOptions, Wake};
use crate::pipeline::alert::{self, Clock};
use crate::pipeline::{self, Hosts, Pipeline, Sink};
use crate::sinks::alerts_file::AlertsFile;
use crate::views::capture::{self, Header};
use crate::views::line::{FORMAT_VERSION, Line, Source};
use crate::views::summary::Summary;
use crate::views::{View, ViewOptions};
use anyhow::Result;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

pub struct TraceOptions {
    pub session: SessionOptions,
    pub view: ViewOptions,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// `pfnwatch record`: the capture file, and the arguments to note in it.
    pub record: Option<(PathBuf, Vec<String>)>,
    pub color: anstream::ColorChoice,
}

/// How often duplicate windows close and the drop counter is read while
/// no record arrives.
const TICK: Duration = Duration::from_millis(500);

pub async fn trace(opts: TraceOptions) -> Result<Summary> {
    let clock = Clock::now();
    // Files first: a capture or alerts file that cannot be written fails
    // before anything is attached. The capture keeps a hidden name until
    // the programs are attached, so a failed start leaves nothing behind.
    let (mut capture, staged) = match &opts.record {
        Some((path, _)) => {
            let (writer, staged) = capture::Writer::stage(path)?;
            (Some(writer), Some(staged))
        }
        None => (None, None),
    };
    let mut alerts_file = AlertsFile::open(opts.view.alerts_file.as_deref())?;
    // Plain text goes into a buffer, flushed after each batch: a write per
    // line, or anstream stripping codes never written, cannot keep up with
    // a busy ring buffer.
    let out: Box<dyn Write> = if opts.view.color {
        Box::new(anstream::AutoStream::new(
            std::io::stdout().lock(),
            opts.color,
        ))
    } else {
        Box::new(BufWriter::with_capacity(64 << 10, std::io::stdout().lock()))
    };
    let mut view = View::new(out, &opts.view, clock).buffered();
    let (enricher, addresses) = Enricher::live_preloaded();
    let mut session = Session::start(&SessionOptions {
        addresses: Some(addresses),
        ..opts.session.clone()
    })?;
    if let (Some(c), Some((_, args))) = (&mut capture, &opts.record) {
        c.header(&header(&opts.session, &session, &clock, args))?;
    }
    if let Some(staged) = staged {
        staged.commit()?;
    }
    let mut pipeline = Pipeline::new(
        opts.session.rules.clone(),
        opts.view.filter.clone(),
        Hosts::Live(Box::new(enricher)),
        opts.view.dedup_window,
        clock,
    );
    view.ready(Line::Ready {
        version: FORMAT_VERSION,
        source: Source::Live,
        release: session.release.clone(),
        programs: session.watcher.programs.clone(),
        recorded_at: None,
    })?;
    // Whoever waits for the ready line sees it now.
    view.flush()?;
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped = 0;
    while !view.done() {
        let wake = match deadline {
            Some(at) => tokio::select! {
                wake = session.wait(Some(&mut tick)) => wake?,
                () = tokio::time::sleep_until(at) => Wake::Stop,
            },
            None => session.wait(Some(&mut tick)).await?,
        };
        session.try_drain(|r| {
            if view.done() {
                return Ok(());
            }
            pipeline
                .feed(r, None, &mut [&mut capture, &mut alerts_file, &mut view])
                .map(drop)
        })?;
        // A batch at a time: a recorder killed outright leaves every batch
        // before the last whole (a write per record could not keep up).
        if let Some(c) = &mut capture {
            c.flush()?;
        }
        let mut sinks: [&mut dyn Sink; 3] = [&mut capture, &mut alerts_file, &mut view];
        // Say how many the kernel lost as soon as it does.
        let drops = Counts::read_drops(&session.watcher.ebpf)?;
        if drops > dropped {
            pipeline::lost(&mut sinks, drops - dropped, drops)?;
            dropped = drops;
        }
        match wake {
            // trace never asks for SIGHUP; there is nothing to reload.
            Wake::Records | Wake::Reload => {}
            Wake::Tick => pipeline.expire(monotonic_ns(), &mut sinks)?,
            Wake::Snapshot => pipeline::counts(&mut sinks, &session.counts()?)?,
            Wake::Stop => break,
        }
        // The batch's lines, its losses and counters, out together.
        view.flush()?;
    }
    let mut sinks: [&mut dyn Sink; 3] = [&mut capture, &mut alerts_file, &mut view];
    pipeline::counts(&mut sinks, &session.counts()?)?;
    if session.undecodable > 0 {
        tracing::warn!(
            count = session.undecodable,
            "records with an unknown layout were skipped (binary and object disagree)"
        );
    }
    pipeline.finish(&mut sinks)?;
    if let Some(c) = capture {
        c.finish_file()?;
    }
    // Dropping the session (after this) detaches every program.
    view.finish(pipeline.filtered)
}

fn header(opts: &SessionOptions, session: &Session, clock: &Clock, args: &[String]) -> Header {
    let special = facts::pte_special(&session.release);
    Header {
        format: capture::FORMAT.to_owned(),
        version: capture::VERSION,
        pfnwatch: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: session.release.clone(),
        arch: std::env::consts::ARCH.to_owned(),
        pte_special: special.present,
        pte_special_source: special.source,
        page_shift: u8::try_from(session.watcher.geometry.page_shift)
            .unwrap_or(pfnwatch_common::pgtable::PAGE_SHIFT_DEFAULT),
        clock_offset_ns: i64::try_from(clock.offset_ns()).unwrap_or(0),
        recorded_at: alert::now_rfc3339(),
        selection: opts.selection,
        args: args.to_vec(),
        programs: session.watcher.programs.clone(),
    }
}
