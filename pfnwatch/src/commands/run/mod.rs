//! `pfnwatch run`: the daemon. Counts every call in the kernel, turns rule
//! hits into alerts (log, JSON lines file), serves `/metrics`, logs
//! per-hook counts every interval. SIGHUP reloads the configuration (what
//! needs a restart is said so and kept); SIGTERM/SIGINT stop it cleanly:
//! the last records are read, pending alerts written, scrapes in flight
//! answered, and the programs detached.

pub mod config;
mod heap;
mod privileges;
pub mod settings;

use crate::cli::RunArgs;
use crate::enrich::Enricher;
use crate::kernel::counters::Counts;
use crate::kernel::decode::monotonic_ns;
use crate::kernel::session::{Session, SessionOptions, Wake};
use crate::kernel::{bpf_stats, facts};
use crate::pipeline::alert::Clock;
use crate::pipeline::filter::Filter;
use crate::pipeline::{Hosts, Pipeline, Sink};
use crate::rules::{Context, RuleConfig, RuleSet, Selection};
use crate::sinks::alert_log::AlertLog;
use crate::sinks::alerts_file::AlertsFile;
use crate::sinks::http::{Scrape, Server, WebConfig};
use crate::sinks::metrics::{self, Snapshot, Tally};
use anyhow::Result;
use pfnwatch_common::Hook;
use settings::Settings;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

/// `--check-config`: the settings the daemon would run with, or why not.
pub fn check_config(args: &RunArgs) -> Result<String> {
    let settings = args.settings()?;
    let web = WebConfig::load(settings.web_config_file.as_deref())?;
    let (path, optional) = args.config_path();
    let source = if optional && !path.exists() {
        format!("{} (absent: defaults)", path.display())
    } else {
        path.display().to_string()
    };
    Ok(format!(
        "config ok: {source}: {}; /metrics over {}",
        settings.summary(),
        web.summary()
    ))
}

/// The web configuration file's TLS, users and headers, certificates read.
fn load_web(settings: &Settings) -> Result<Arc<WebConfig>> {
    let web = WebConfig::load(settings.web_config_file.as_deref())?;
    if web.auth.is_some() && web.tls.is_none() {
        tracing::warn!(
            "basic_auth_users without tls_server_config: passwords cross the network in clear text"
        );
    }
    Ok(Arc::new(web))
}

pub async fn run(args: RunArgs) -> Result<()> {
    heap::fix_thresholds();
    let settings = args.settings()?;
    let context = Context {
        arch_pte_special: facts::pte_special(&facts::release()).present,
    };
    // The outside world first: a bad alerts file or a taken port fails
    // before anything is attached.
    let alerts_file = AlertsFile::open(settings.alerts_file.as_deref())?;
    let web = load_web(&settings)?;
    let (scrape_tx, scrapes) = mpsc::channel::<Scrape>(16);
    let server = Server::bind(settings.listen_address, scrape_tx.clone(), web).await?;
    let rules = RuleSet::new(settings.rules.clone(), context);
    let (enricher, addresses) = Enricher::live_preloaded();
    let mut session = Session::start(&SessionOptions {
        btf: settings.btf.clone(),
        selection: Selection::Rules,
        rules: rules.clone(),
        ringbuf_bytes: settings.ringbuf_kib * 1024,
        // Alerts name the driver by its call path.
        capture_stack: true,
        hooks: None,
        narrow: None,
        only_pids: Vec::new(),
        lookups: settings.lookups,
        lookups_grace: settings.lookups_grace,
        addresses: Some(addresses),
    })?;
    session.watch_hangup()?;
    let pipeline = Pipeline::new(
        rules,
        Filter::default(),
        Hosts::Live(Box::new(enricher)),
        settings.dedup_window,
        Clock::now(),
    );
    for p in &session.watcher.programs {
        tracing::info!(program = %p.program, function = %p.hook.function(), state = ?p.state, "hook");
    }
    // Attached: from here on the daemon needs far less than it started with.
    heap::give_back_free_memory();
    match privileges::drop_all_but(&privileges::kept(server.addr)) {
        Ok((kept, dropped)) => {
            let kept: Vec<String> = kept.iter().map(|(c, why)| format!("{c} ({why})")).collect();
            let dropped: Vec<String> = dropped.iter().map(ToString::to_string).collect();
            tracing::info!(
                kept = %kept.join(", "),
                dropped = %dropped.join(","),
                "capabilities narrowed after attaching"
            );
        }
        Err(e) => tracing::warn!("capabilities not narrowed: {e:#}"),
    }
    tracing::info!(kernel = %session.release, metrics = %server.url(), web = %server.web().summary(), "pfnwatch running");
    tracing::info!("settings: {}", settings.summary());
    let daemon = Daemon {
        tick: ticker(settings.interval),
        loaded_rules: settings.rules.clone(),
        out: Outputs {
            log: AlertLog {
                min: settings.log_severity,
            },
            alerts_file,
            tally: Tally::default(),
        },
        settings,
        args,
        context,
        session,
        pipeline,
        server: Some(server),
        scrape_tx,
        last: Counts::default(),
        start_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    };
    daemon.run(scrapes).await
}

struct Daemon {
    args: RunArgs,
    settings: Settings,
    /// The rules the kernel's record mask was built from.
    loaded_rules: RuleConfig,
    context: Context,
    session: Session,
    pipeline: Pipeline,
    out: Outputs,
    server: Option<Server>,
    /// For a listener bound on reload.
    scrape_tx: mpsc::Sender<Scrape>,
    tick: Interval,
    /// The counts at the last interval, for the log's growth figures.
    last: Counts,
    start_time: f64,
}

/// The daemon's sinks: alerts to the log and the alerts file, counts to
/// metrics.
struct Outputs {
    log: AlertLog,
    alerts_file: Option<AlertsFile>,
    tally: Tally,
}

impl Outputs {
    fn all(&mut self) -> [&mut dyn Sink; 3] {
        [&mut self.log, &mut self.alerts_file, &mut self.tally]
    }
}

enum Event {
    Wake(Wake),
    Scrape(Scrape),
}

impl Daemon {
    async fn run(mut self, mut scrapes: mpsc::Receiver<Scrape>) -> Result<()> {
        loop {
            let event = tokio::select! {
                wake = self.session.wait(Some(&mut self.tick)) => Event::Wake(wake?),
                Some(reply) = scrapes.recv() => Event::Scrape(reply),
            };
            // Whatever woke us, take in the records first: a scrape then
            // counts every record the kernel had committed.
            self.drain()?;
            match event {
                Event::Scrape(reply) => {
                    self.reconcile();
                    self.answer(reply);
                    heap::give_back_free_memory();
                }
                Event::Wake(Wake::Records) => {}
                Event::Wake(Wake::Tick | Wake::Snapshot) => {
                    self.reconcile();
                    self.pipeline.expire(monotonic_ns(), &mut self.out.all())?;
                    self.last = log_counts(&self.session, &self.last)?;
                    heap::give_back_free_memory();
                }
                Event::Wake(Wake::Reload) => self.reload().await,
                Event::Wake(Wake::Stop) => break,
            }
        }
        self.stop(scrapes).await
    }

    fn drain(&mut self) -> Result<()> {
        let Daemon {
            session,
            pipeline,
            out,
            ..
        } = self;
        let mut sinks = out.all();
        session.try_drain(|r| pipeline.feed(r, None, &mut sinks).map(drop))
    }

    /// The live mappings by the kernel's inventory, once the records are
    /// in (`Tally::reconcile`).
    fn reconcile(&mut self) {
        let Some(ids) = self.session.inventory_ids() else {
            return;
        };
        let lost = self.out.tally.reconcile(&ids, std::time::Instant::now());
        if lost > 0 {
            tracing::warn!(
                mappings = lost,
                "live pfn mappings the kernel's inventory no longer holds, their gone \
                 records lost on the way: counted gone"
            );
        }
    }

    fn answer(&self, reply: Scrape) {
        match self.render() {
            Ok(text) => {
                let _ = reply.send(text);
            }
            // Dropping the reply answers 503; the log says why.
            Err(e) => tracing::error!("rendering /metrics: {e:#}"),
        }
    }

    fn render(&self) -> Result<String> {
        let counts = self.session.counts()?;
        let program_stats = bpf_stats::stats(&self.session.watcher);
        metrics::render(&Snapshot {
            kernel_release: &self.session.release,
            start_time: self.start_time,
            counts: &counts,
            programs: &self.session.watcher.programs,
            program_stats: &program_stats,
            stats_enabled: bpf_stats::enabled(),
            tally: &self.out.tally,
            undecodable: self.session.undecodable,
            ringbuf_bytes: self.settings.ringbuf_kib * 1024,
            lookups: self.session.lookups.stats,
        })
    }

    /// SIGHUP: everything or nothing. The new file is read and checked,
    /// the web configuration and its certificates read again, the new
    /// sinks opened and a new listener bound before anything changes; a
    /// failure leaves the running configuration as it was.
    async fn reload(&mut self) {
        match self.try_reload().await {
            Ok(restart) => {
                self.out.tally.reloads_ok += 1;
                self.out.tally.last_reload_ok = true;
                self.out.tally.restart_required = !restart.is_empty();
                tracing::info!("configuration reloaded: {}", self.settings.summary());
                for what in restart {
                    tracing::warn!("needs a restart, not applied: {what}");
                }
            }
            Err(e) => {
                self.out.tally.reloads_failed += 1;
                self.out.tally.last_reload_ok = false;
                tracing::error!(
                    "configuration not reloaded, still running the previous one: {e:#}"
                );
            }
        }
    }

    async fn try_reload(&mut self) -> Result<Vec<String>> {
        let new = self.args.settings()?;
        let (next, restart) = self.settings.reload(&new, &self.loaded_rules);
        // Reopened even when unchanged: SIGHUP after logrotate moved it.
        let alerts_file = AlertsFile::open(next.alerts_file.as_deref())?;
        // Read again even when the path is the same: renewed certificates
        // and changed users are what a reload is for.
        let web = load_web(&next)?;
        let server = if next.listen_address != self.settings.listen_address {
            Some(Server::bind(next.listen_address, self.scrape_tx.clone(), web.clone()).await?)
        } else {
            None
        };
        // From here on nothing fails half-way.
        self.pipeline.rules = RuleSet::new(next.rules.clone(), self.context);
        self.out.alerts_file = alerts_file;
        self.out.log.min = next.log_severity;
        if next.dedup_window != self.settings.dedup_window {
            self.pipeline
                .set_dedup_window(next.dedup_window, &mut self.out.all())?;
        }
        if next.interval != self.settings.interval {
            self.tick = ticker(next.interval);
        }
        if let Some(server) = server {
            tracing::info!(metrics = %server.url(), web = %web.summary(), "listening");
            if let Some(old) = self.server.replace(server) {
                old.stop().await?;
            }
        } else if let Some(server) = &self.server {
            server.set_web(web);
            tracing::info!(metrics = %server.url(), web = %server.web().summary(), "web configuration applied");
        }
        self.settings = next;
        Ok(restart)
    }

    /// The last records, the pending follow-ups, the scrapes already
    /// asked for, then the listener and the programs.
    async fn stop(mut self, mut scrapes: mpsc::Receiver<Scrape>) -> Result<()> {
        self.drain()?;
        self.pipeline.finish(&mut self.out.all())?;
        scrapes.close();
        while let Some(reply) = scrapes.recv().await {
            self.answer(reply);
        }
        if let Some(server) = self.server.take() {
            server.stop().await?;
        }
        log_counts(&self.session, &self.last)?;
        let attached = self.session.watcher.attached().count();
        // Dropping the session closes the links: the programs detach.
        drop(self.session);
        tracing::info!(detached = attached, "pfnwatch stopped");
        Ok(())
    }
}

fn ticker(every: Duration) -> Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
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
