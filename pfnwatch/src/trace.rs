//! `pfnwatch trace` and `pfnwatch record`: the live view, one line per
//! record as it happens, optionally saved to a capture file.

use crate::alert::Clock;
use crate::capture::{self, Header};
use crate::counters::Counts;
use crate::enrich::Enricher;
use crate::kernel;
use crate::output::{FORMAT_VERSION, Line, Source};
use crate::record::monotonic_ns;
use crate::rules::Selection;
use crate::session::{Session, SessionOptions, Wake};
use crate::summary::Summary;
use crate::view::{Flow, ViewOptions, Viewer};
use anyhow::Result;
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
    // before anything is attached.
    let capture = match &opts.record {
        Some((path, _)) => Some(capture::Writer::create(path)?),
        None => None,
    };
    let out = anstream::AutoStream::new(std::io::stdout().lock(), opts.color);
    let mut view = Viewer::new(
        out,
        opts.view.clone(),
        opts.session.rules.clone(),
        clock,
        capture,
    )?;
    let mut session = Session::start(&opts.session)?;
    if let Some((_, args)) = &opts.record {
        view.capture_header(&header(&opts.session, &session, &clock, args))?;
    }
    let mut enricher = Enricher::live();
    let ready = Line::Ready {
        version: FORMAT_VERSION,
        source: Source::Live,
        release: session.release.clone(),
        programs: session.watcher.programs.clone(),
        recorded_at: None,
    };
    let mut flow = view.ready(ready)?;
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped = 0;
    while flow == Flow::Go {
        let wake = match deadline {
            Some(at) => tokio::select! {
                wake = session.wait(Some(&mut tick)) => wake?,
                () = tokio::time::sleep_until(at) => Wake::Stop,
            },
            None => session.wait(Some(&mut tick)).await?,
        };
        let mut records = Vec::new();
        session.drain(|r| records.push(r));
        for r in records {
            flow = view.record(r, |r| enricher.enrich(r))?;
            if flow == Flow::Stop {
                break;
            }
        }
        // Say how many the kernel lost as soon as it does.
        let drops = Counts::read_drops(&session.watcher.ebpf)?;
        if drops > dropped {
            view.lost(drops - dropped, drops)?;
            dropped = drops;
        }
        match wake {
            // trace never asks for SIGHUP; there is nothing to reload.
            Wake::Records | Wake::Reload => {}
            Wake::Tick => {
                view.expire(monotonic_ns())?;
            }
            Wake::Snapshot => {
                view.counts(session.counts()?)?;
            }
            Wake::Stop => break,
        }
    }
    view.counts(session.counts()?)?;
    if session.undecodable > 0 {
        tracing::warn!(
            count = session.undecodable,
            "records with an unknown layout were skipped (binary and object disagree)"
        );
    }
    // Dropping the session (after this) detaches every program.
    view.finish()
}

fn header(opts: &SessionOptions, session: &Session, clock: &Clock, args: &[String]) -> Header {
    let special = kernel::pte_special(&session.release);
    Header {
        format: capture::FORMAT.to_owned(),
        version: capture::VERSION,
        pfnwatch: env!("CARGO_PKG_VERSION").to_owned(),
        kernel: session.release.clone(),
        arch: std::env::consts::ARCH.to_owned(),
        pte_special: special.present,
        pte_special_source: special.source,
        clock_offset_ns: i64::try_from(clock.offset_ns()).unwrap_or(0),
        recorded_at: crate::alert::now_rfc3339(),
        selection: match opts.selection {
            Selection::Rules => "rules",
            Selection::All => "all",
        }
        .to_owned(),
        args: args.to_vec(),
        programs: session.watcher.programs.clone(),
    }
}
