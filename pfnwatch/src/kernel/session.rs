//! A running watch: the attached programs, the ring buffers' reader, and
//! the signals that steer trace and run.

use super::bpf_stats;
use super::counters::Counts;
use super::decode::Record;
use super::facts;
use super::loader::{self, LoadOptions, ProgramState, Watcher};
use super::lookups::{LookupMode, Lookups, Ready};
use super::programs;
use super::reader::Reader;
use crate::rules::{RuleSet, Selection};
use anyhow::{Context, Result, bail};
use aya::maps::{MapData, RingBuf};
use pfnwatch_common::{Event, Hook, RecordMask, abi};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Interval;

pub const RINGBUF_RULE: &str = "the ring buffer must be a power of two between 4 KiB and 1 GiB";

/// The one place the ring buffer's size rule lives (flags and the
/// configuration file use it).
pub fn check_ringbuf_kib(kib: u32) -> Result<u32, String> {
    if kib < 4 || !kib.is_power_of_two() || kib > 1024 * 1024 {
        return Err(format!("{kib} KiB: {RINGBUF_RULE}"));
    }
    Ok(kib)
}

/// Why [`Session::wait`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Records may be waiting: call [`Session::drain`].
    Records,
    /// SIGUSR1: the user asks for the counters.
    Snapshot,
    /// The interval ticked.
    Tick,
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP, once [`Session::watch_hangup`] asked for it: reload.
    Reload,
}

/// What one wait ended with.
enum Waited {
    Wake(Wake),
    /// The lookups need attention.
    Lookups(Ready),
}

/// What to load and how.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Kernel BTF to use instead of /sys/kernel/btf/vmlinux.
    pub btf: Option<PathBuf>,
    pub selection: Selection,
    pub rules: RuleSet,
    pub ringbuf_bytes: u32,
    pub capture_stack: bool,
    /// Load only these hooks' programs (`trace --hook`); None: every hook.
    pub hooks: Option<BTreeSet<Hook>>,
    /// ANDed into the record mask: what trace's filters can show.
    pub narrow: Option<RecordMask>,
    /// Records only for these pids or tgids (`trace --pid`); empty: all.
    pub only_pids: Vec<u32>,
    /// When the page-table lookups are attached, and how long they stay
    /// once no device mapping needs them.
    pub lookups: LookupMode,
    pub lookups_grace: Duration,
    /// The kernel addresses, when the caller read /proc/kallsyms already
    /// ([`crate::enrich::Enricher::live_preloaded`]); None: read them.
    pub addresses: Option<facts::KernelAddresses>,
}

pub struct Session {
    pub watcher: Watcher,
    pub release: String,
    /// Both ring buffers' records, the urgent ones (a possible warning or
    /// critical hit) read first.
    reader: Reader,
    usr1: Signal,
    term: Signal,
    int: Signal,
    /// None until a caller that can reload asks for SIGHUP (without a
    /// handler, SIGHUP ends the process as it does any terminal program).
    hup: Option<Signal>,
    /// Records whose hook id this binary does not know (object/binary skew).
    pub undecodable: u64,
    pub lookups: Lookups,
}

impl Session {
    /// Loads and attaches; fails if the kernel lacks BTF or if not one
    /// program attached (the errors say why), or if what attached leaves
    /// pfnwatch blind to something it must see.
    pub fn start(opts: &SessionOptions) -> Result<Session> {
        let at = std::time::Instant::now();
        let facts::KernelBtf { btf, functions } = facts::load_btf(opts.btf.as_deref())?;
        tracing::info!(ms = at.elapsed().as_millis(), "kernel BTF read");
        let mut watcher = loader::load(LoadOptions {
            btf,
            functions: &functions,
            selection: opts.selection,
            rules: &opts.rules,
            ringbuf_bytes: opts.ringbuf_bytes,
            capture_stack: opts.capture_stack,
            hooks: opts.hooks.as_ref(),
            narrow: opts.narrow.as_ref(),
            only_pids: &opts.only_pids,
            addresses: opts.addresses,
        })?;
        let refused: Vec<String> = watcher
            .programs
            .iter()
            .filter_map(|p| match &p.state {
                ProgramState::Refused { error, hint, .. } => Some(format!(
                    "{} ({} {}): {error}; {hint}",
                    p.program,
                    p.attach.section_prefix(),
                    p.hook
                )),
                _ => None,
            })
            .collect();
        if watcher.attached().next().is_none() {
            // With --hook, the hooks asked for may all be missing here.
            let missing = watcher.programs.iter().filter_map(|p| {
                let asked = opts.hooks.as_ref()?.contains(&p.hook);
                (asked && p.state == ProgramState::Missing).then(|| {
                    format!(
                        "{} is not in this kernel ({})",
                        p.hook,
                        programs::availability(p.hook)
                    )
                })
            });
            let mut reasons: Vec<String> = refused.iter().cloned().chain(missing).collect();
            // A hook's fentry and fexit are missing together: say it once.
            reasons.dedup();
            bail!(
                "no program could be attached:\n  {}\n(`pfnwatch check` explains what this kernel supports)",
                reasons.join("\n  ")
            );
        }
        for line in &refused {
            tracing::warn!("not attached: {line}");
        }
        let gaps = loader::gaps(&watcher.programs);
        if !gaps.is_empty() {
            bail!("pfnwatch would be blind here: {}", gaps.join("; "));
        }
        let rings = vec![
            ring(&mut watcher, abi::names::URGENT_EVENTS)?,
            ring(&mut watcher, abi::names::EVENTS)?,
        ];
        let reader = Reader::start(rings, queue_cap(opts.ringbuf_bytes))?;
        let lookups = Lookups::start(&mut watcher, opts.lookups, opts.lookups_grace)?;
        Ok(Session {
            watcher,
            release: facts::release(),
            reader,
            usr1: signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?,
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: None,
            undecodable: 0,
            lookups,
        })
    }

    /// From now on SIGHUP wakes [`Session::wait`] with [`Wake::Reload`].
    pub fn watch_hangup(&mut self) -> Result<()> {
        self.hup = Some(signal(SignalKind::hangup()).context("SIGHUP handler")?);
        Ok(())
    }

    /// Waits for records, a signal, or the next tick; attaches and
    /// detaches the page-table lookups on the way as the kernel asks.
    pub async fn wait(&mut self, mut tick: Option<&mut Interval>) -> Result<Wake> {
        loop {
            match self.wait_once(tick.as_deref_mut()).await? {
                Waited::Wake(wake) => return Ok(wake),
                Waited::Lookups(why) => self.lookups.handle(&mut self.watcher.ebpf, why)?,
            }
        }
    }

    async fn wait_once(&mut self, tick: Option<&mut Interval>) -> Result<Waited> {
        // A device mapping waiting for the lookups goes before a record
        // batch: the first batch of a run can take long (it reads the
        // symbol table), and every moment until the attach is lookups the
        // mapping's process makes unseen. The select below stays fair, so
        // a flood of records starves no signal.
        let lookups_first = tokio::select! {
            biased;
            ready = self.lookups.ready() => Some(ready),
            () = std::future::ready(()) => None,
        };
        if let Some(ready) = lookups_first {
            return Ok(Waited::Lookups(ready?));
        }
        let tick = async {
            match tick {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let hup = self.hup.as_mut();
        let hup = async move {
            match hup {
                Some(hup) => hup.recv().await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            got = self.reader.recv() => {
                got?;
                Wake::Records
            }
            _ = self.usr1.recv() => Wake::Snapshot,
            _ = self.term.recv() => Wake::Stop,
            _ = self.int.recv() => Wake::Stop,
            _ = hup => Wake::Reload,
            _ = tick => Wake::Tick,
            ready = self.lookups.ready() => return Ok(Waited::Lookups(ready?)),
        };
        Ok(Waited::Wake(wake))
    }

    /// Hands every record in the ring buffers to `f`, without blocking:
    /// the urgent ones first.
    pub fn drain(&mut self, mut f: impl FnMut(Record)) {
        let undecodable = &mut self.undecodable;
        self.reader.drain(|bytes| {
            match Event::from_bytes(bytes).and_then(|e| Record::from_event(&e)) {
                Some(record) => f(record),
                None => *undecodable += 1,
            }
        });
    }

    /// [`Session::drain`] into `f` as each record is decoded, never
    /// collected (a burst would be a heap peak). After `f` fails the rest
    /// is drained unseen and the first error returned.
    pub fn try_drain(&mut self, mut f: impl FnMut(Record) -> Result<()>) -> Result<()> {
        let mut failed = Ok(());
        self.drain(|r| {
            if failed.is_ok() {
                failed = f(r);
            }
        });
        failed
    }

    /// The ids of the vmas the kernel's inventory holds now (their
    /// addresses stay here). None when a read failed part-way: an entry
    /// gone between two reads of the walk is no reason to guess.
    pub fn inventory_ids(&self) -> Option<BTreeSet<u64>> {
        let map = self.watcher.ebpf.map(abi::names::INVENTORY)?;
        let map =
            aya::maps::HashMap::<_, u64, [u64; abi::INVENTORY_VALUE_U64S]>::try_from(map).ok()?;
        map.iter()
            .map(|entry| entry.ok().map(|(_, tracked)| tracked[0]))
            .collect()
    }

    pub fn counts(&self) -> Result<Counts> {
        let mut counts = Counts::read(&self.watcher.ebpf)?;
        for p in bpf_stats::stats(&self.watcher) {
            if p.misses > 0 {
                *counts.misses.entry(p.hook).or_default() += p.misses;
            }
        }
        Ok(counts)
    }
}

/// A ring buffer of the object's, taken out of it for the reader.
fn ring(watcher: &mut Watcher, name: &str) -> Result<RingBuf<MapData>> {
    let map = watcher
        .ebpf
        .take_map(name)
        .with_context(|| format!("the object has no {name} ring buffer"))?;
    RingBuf::try_from(map).with_context(|| format!("opening the {name} ring buffer"))
}

/// Bytes of records the reader may hold in memory: four ring buffers' worth
/// (a burst the rings alone would lose), and never less than 4 MiB.
fn queue_cap(ringbuf_bytes: u32) -> usize {
    usize::try_from(ringbuf_bytes)
        .unwrap_or(usize::MAX)
        .saturating_mul(4)
        .max(4 << 20)
}
