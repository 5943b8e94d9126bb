//! `pfnwatch run`: the daemon. Counts every call in the kernel, turns rule
//! hits into alerts (log, JSON lines file), logs per-hook counts every
//! interval.

use crate::alert::Clock;
use crate::counters::Counts;
use crate::dedup::Dedup;
use crate::enrich::Enricher;
use crate::pipeline::Pipeline;
use crate::rules::Severity;
use crate::session::{Session, SessionOptions, Wake};
use crate::sinks::Sinks;
use anyhow::Result;
use pfnwatch_common::Hook;
use std::path::PathBuf;
use std::time::Duration;

pub struct RunOptions {
    pub session: SessionOptions,
    pub interval: Duration,
    pub alerts_file: Option<PathBuf>,
    pub dedup_window: Duration,
    pub log_severity: Severity,
}

pub async fn run(opts: RunOptions) -> Result<()> {
    // Open the sinks first: a bad --alerts-file must fail before attaching.
    let sinks = Sinks::new(opts.alerts_file.as_deref(), opts.log_severity)?;
    let mut session = Session::start(&opts.session)?;
    let mut pipeline = Pipeline::new(
        opts.session.rules.clone(),
        Some(Enricher::live()),
        Dedup::new(opts.dedup_window),
        sinks,
        Clock::now(),
    );
    for p in &session.watcher.programs {
        tracing::info!(program = %p.program, function = %p.function, state = ?p.state, "hook");
    }
    tracing::info!(kernel = %session.release, "pfnwatch running");
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Counts::default();
    loop {
        let wake = session.wait(Some(&mut tick)).await?;
        let mut records = Vec::new();
        session.drain(|r| records.push(r));
        for r in &records {
            pipeline.record(r)?;
        }
        match wake {
            Wake::Records => {}
            Wake::Tick | Wake::Snapshot => {
                pipeline.expire(crate::record::monotonic_ns())?;
                last = log_counts(&session, &last)?;
            }
            Wake::Stop => {
                pipeline.finish()?;
                log_counts(&session, &last)?;
                tracing::info!("pfnwatch stopping");
                return Ok(());
            }
        }
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
