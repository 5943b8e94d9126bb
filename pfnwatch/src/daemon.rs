//! `pfnwatch run`: the daemon. For now it logs per-hook counts every
//! interval and every rule hit as it happens.

use crate::counters::Counts;
use crate::output::{Format, Line};
use crate::rules::{self, Selection, Severity};
use crate::session::{Session, Wake};
use anyhow::Result;
use pfnwatch_common::Hook;
use std::path::PathBuf;
use std::time::Duration;

pub struct RunOptions {
    pub btf: Option<PathBuf>,
    pub interval: Duration,
    pub ringbuf_bytes: u32,
}

pub async fn run(opts: RunOptions) -> Result<()> {
    let mut session = Session::start(opts.btf.as_deref(), Selection::Rules, opts.ringbuf_bytes)?;
    for p in &session.watcher.programs {
        tracing::info!(program = %p.program, function = %p.function, state = ?p.state, "hook");
    }
    tracing::info!(kernel = %session.release, "pfnwatch running");
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Counts::default();
    loop {
        let wake = session.wait(Some(&mut tick)).await?;
        session.drain(log_record);
        match wake {
            Wake::Records => {}
            Wake::Tick | Wake::Snapshot => last = log_counts(&session, &last)?,
            Wake::Stop => {
                log_counts(&session, &last)?;
                tracing::info!("pfnwatch stopping");
                return Ok(());
            }
        }
    }
}

fn log_record(record: crate::record::Record) {
    let hits = rules::matching(record.hook, record.class);
    let Some(worst) = hits.first() else {
        return;
    };
    let line = Line::record(record).render(Format::Text);
    match worst.severity {
        Severity::Critical | Severity::Warning => {
            tracing::warn!(rule = worst.id, why = worst.why, "{line}")
        }
        Severity::Notice | Severity::Info => tracing::info!(rule = worst.id, "{line}"),
    }
}

/// Logs each hook's total and growth; returns the new totals.
fn log_counts(session: &Session, last: &Counts) -> Result<Counts> {
    let now = session.counts()?;
    let delta = now.since(last);
    for hook in Hook::ALL {
        let total = now.hook_total(hook);
        if total > 0 {
            tracing::info!(hook = %hook, total, new = delta.hook_total(hook), "calls");
        }
    }
    if delta.drops > 0 {
        tracing::warn!(lost = delta.drops, "ring buffer full: records lost");
    }
    Ok(now)
}
