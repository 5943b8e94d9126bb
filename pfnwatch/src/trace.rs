//! `pfnwatch trace`: the live view, one line per record.

use crate::output::{Format, Line};
use crate::session::{Session, SessionOptions, Wake};
use anyhow::Result;
use std::io::{ErrorKind, Write};

pub struct TraceOptions {
    pub session: SessionOptions,
    pub format: Format,
}

pub async fn trace(opts: TraceOptions) -> Result<()> {
    let mut session = Session::start(&opts.session)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let ready = Line::Ready {
        release: session.release.clone(),
        programs: session.watcher.programs.clone(),
    };
    if emit(&mut out, &ready, opts.format)? {
        return Ok(());
    }
    loop {
        let wake = session.wait(None).await?;
        let mut lines = Vec::new();
        let rules = &opts.session.rules;
        session.drain(|r| lines.push(Line::record(r, rules)));
        if matches!(wake, Wake::Snapshot | Wake::Stop) {
            lines.push(Line::Counts {
                counts: session.counts()?,
            });
        }
        for line in &lines {
            if emit(&mut out, line, opts.format)? {
                return Ok(());
            }
        }
        if wake == Wake::Stop {
            break;
        }
    }
    if session.undecodable > 0 {
        tracing::warn!(
            count = session.undecodable,
            "records with an unknown layout were skipped (binary and object disagree)"
        );
    }
    Ok(())
}

/// Writes one line and flushes. `Ok(true)` when the reader went away
/// (a closed pipe ends trace quietly, like other line tools).
fn emit(out: &mut impl Write, line: &Line, format: Format) -> Result<bool> {
    let text = line.render(format);
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}
