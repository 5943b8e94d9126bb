//! The page-table lookup programs (vm_normal_page, _pmd, _pud,
//! folio_walk_start), attached only while something needs them.
//!
//! Their functions run for every pte of every fork and munmap on the host,
//! and the fexit trampoline costs as much as the work it watches
//! (BENCHMARKS.md). They only ever record a lookup in a pfn mapping, and a
//! host that maps no device has none worth watching: the vDSO's, pfnwatch's
//! own, and the kernel's own ring buffers (perf, BPF, io_uring; see
//! [`SAFE_FOPS`]) are skipped. So in on-demand mode the kernel counts the
//! live watched vmas in the inventory (`lookups` map), the first one while
//! the lookups are detached wakes this module through `lookup_wake`, and
//! they attach; once none has been left for the grace period, and a walk of
//! every task's vmas (`existing_vmas`) finds none the inventory missed, they
//! detach again.
//!
//! Between a device mapping's mmap and the attach, lookups in it are not
//! seen; the mmap itself, its remaps and inserts are (those programs never
//! detach). `pfnwatch_lookups_attach_delay_seconds` shows how long that was.
//!
//! The inventory heals: the kernel skips a program's call while that
//! program runs on the CPU already, which on preemptible kernels happens
//! whenever a task is preempted inside it (`kernel::bpf_stats`). A missed
//! creation leaves a device mapping unwatched, a missed free a gone vma
//! counted. When the inventory programs' misses grow, two walks follow
//! (one now, one a second later): the first announces what the inventory
//! lacks, and the second, at its end, drops what neither found
//! (`sweep_gone` in the kernel program).

use super::bpf_stats;
use super::loader::{self, Link, ProgramState, Watcher};
use super::programs::ProgramSpec;
use anyhow::{Context, Result};
use aya::Ebpf;
use aya::maps::{Array, MapData, RingBuf};
use aya::programs::Iter;
use pfnwatch_common::{Family, Hook, abi};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::{Interval, MissedTickBehavior};

/// `file_operations` of kernel subsystems that map pfns by design and whose
/// lookups no rule above info can hit (their mappings exist on most hosts):
/// - `perf_fops`: perf_mmap() refuses a mapping without VM_SHARED
///   (kernel/events/core.c, 6.1, 6.12, 7.2), so no COW; its pages are the
///   ring buffer's own.
/// - `bpf_map_fops`: bpf_map_mmap() refuses one without VM_SHARED too
///   (kernel/bpf/syscall.c), and maps vmalloc'ed pages.
/// - `io_uring_fops`: io_uring_mmap() maps the rings' own pages
///   (io_uring/io_uring.c on 6.1, io_uring/memmap.c on 6.12 and 7.2).
///
/// The correct-driver VM tests (perf, io_uring, BPF ring buffers) show none
/// of them firing a rule above info with the lookups attached.
pub const SAFE_FOPS: [&str; 3] = ["perf_fops", "bpf_map_fops", "io_uring_fops"];

/// When the lookup programs are attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LookupMode {
    /// From start to end: every lookup in every pfn mapping, the vDSO's
    /// and the kernel's own included.
    Always,
    /// While a watched pfn mapping exists (a device's, not the vDSO's or
    /// a kernel subsystem's): hosts without one pay nothing on fork and
    /// munmap.
    #[default]
    OnDemand,
}

impl std::fmt::Display for LookupMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LookupMode::Always => "always",
            LookupMode::OnDemand => "on-demand",
        })
    }
}

/// Default seconds without a watched vma before the lookups detach.
pub const DEFAULT_GRACE_SECS: u64 = 30;

/// Whether `hook`'s programs are lookups that attach on demand.
pub fn on_demand(hook: Hook) -> bool {
    matches!(hook.family(), Family::Lookup | Family::Walk)
}

/// What the lookups did, for metrics and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    pub attached: bool,
    /// Live watched vmas, as the kernel counts them.
    pub watched: u64,
    pub attaches: u64,
    pub detaches: u64,
    /// From the first watched vma's creation to the lookups attached, the
    /// last time they attached because of one.
    pub last_attach_delay: Option<Duration>,
    /// Walks of every task's vmas (at start and before each detach).
    pub walks: u64,
    /// Wake-ups the kernel's notification did not deliver: the periodic
    /// check found them in the ring.
    pub late_wakeups: u64,
    /// Device mappings gone before the lookups attached: lookups in them
    /// were not seen.
    pub unseen_mappings: u64,
}

/// Why [`Lookups::ready`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// The kernel's notification on `lookup_wake`.
    Woken,
    /// The periodic check.
    Check,
}

/// How often the state is checked while the lookups are detached: the
/// bound on the attach delay when a wake-up notification goes astray (seen
/// on arm64 7.2 after a session that captured call paths), and while they
/// are attached: the grace period's resolution.
const CHECK_DETACHED: Duration = Duration::from_millis(100);
const CHECK_ATTACHED: Duration = Duration::from_secs(1);

fn check_interval(period: Duration) -> Interval {
    let mut check = tokio::time::interval(period);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    check
}

/// The on-demand state: the programs, their links while attached, the
/// kernel's counter and wake-ups.
pub struct Lookups {
    mode: LookupMode,
    grace: Duration,
    programs: Vec<&'static ProgramSpec>,
    links: Vec<(&'static ProgramSpec, Link)>,
    state: Array<MapData, u64>,
    wake: AsyncFd<RingBuf<MapData>>,
    check: Interval,
    idle_since: Option<Instant>,
    /// The inventory's programs (creation and free), whose misses ask for
    /// healing walks.
    inventory_programs: Vec<String>,
    /// The last walk's number (`abi::LOOKUPS_WALK`).
    walk_number: u64,
    heal: Heal,
    pub stats: LookupStats,
}

/// When the inventory's programs' misses ask for walks: two of them, one
/// as soon as allowed and one [`Heal::SPACING`] later (a task hidden from
/// one walk, between exit_mm and exit_files, is not hidden from the next),
/// then none for [`Heal::COOLDOWN`]: on a busy preemptible host misses
/// come every few seconds (the 7.2 soak: six in 30 s), and a walk visits
/// every vma of every task. Misses in the meantime ask for the next pair.
#[derive(Debug)]
struct Heal {
    misses: u64,
    /// Missed since the last walk.
    pending: u64,
    walks_due: u8,
    next: Instant,
}

impl Heal {
    const SPACING: Duration = Duration::from_secs(1);
    const COOLDOWN: Duration = Duration::from_secs(10);

    fn new(misses: u64, now: Instant) -> Heal {
        Heal {
            misses,
            pending: 0,
            walks_due: 0,
            next: now,
        }
    }

    /// `misses`: as read now. When a walk is due now (it is then taken as
    /// done), returns the calls missed since the last one.
    fn check(&mut self, misses: u64, now: Instant) -> Option<u64> {
        let new = misses.saturating_sub(self.misses);
        self.misses = self.misses.max(misses);
        if new > 0 {
            self.pending += new;
            self.walks_due = 2;
        }
        if self.walks_due == 0 || now < self.next {
            return None;
        }
        self.walks_due -= 1;
        self.next = now
            + if self.walks_due > 0 {
                Heal::SPACING
            } else {
                Heal::COOLDOWN
            };
        Some(std::mem::take(&mut self.pending))
    }
}

impl Lookups {
    /// Takes the lookup programs' links from `watcher` (the loader
    /// attached them, so refusals are reported like any program's), walks
    /// every task's vmas once (the mappings made before pfnwatch), and in
    /// on-demand mode detaches them again unless a watched vma exists.
    pub fn start(watcher: &mut Watcher, mode: LookupMode, grace: Duration) -> Result<Lookups> {
        let ebpf = &mut watcher.ebpf;
        let state = ebpf
            .take_map(abi::names::LOOKUPS)
            .context("the object has no lookups map")?;
        let state = Array::try_from(state).context("opening the lookups map")?;
        let wake = ebpf
            .take_map(abi::names::LOOKUP_WAKE)
            .context("the object has no lookup_wake ring buffer")?;
        let wake = RingBuf::try_from(wake).context("opening the lookup_wake ring buffer")?;
        // SAFETY: the RingBuf owns the map's fd and the AsyncFd owns the
        // RingBuf, so the fd stays open and unchanged while registered.
        let wake = unsafe { AsyncFd::register_with_interest(wake, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("registering the lookup_wake ring buffer with tokio")?;
        let links = std::mem::take(&mut watcher.lookup_links);
        let inventory_programs: Vec<String> = watcher
            .attached()
            .filter(|p| matches!(p.hook.family(), Family::VmaCreated | Family::VmaGone))
            .map(|p| p.program.clone())
            .collect();
        let mut lookups = Lookups {
            mode,
            grace,
            programs: links.iter().map(|(spec, _)| *spec).collect(),
            stats: LookupStats {
                attached: !links.is_empty(),
                ..LookupStats::default()
            },
            links,
            state,
            wake,
            check: check_interval(CHECK_ATTACHED),
            idle_since: None,
            heal: Heal::new(
                bpf_stats::misses(&watcher.ebpf, &inventory_programs),
                Instant::now(),
            ),
            inventory_programs,
            walk_number: 0,
        };
        lookups.set_attached(true)?;
        match lookups.walk(&mut watcher.ebpf) {
            Ok(()) => {}
            Err(e) => {
                if mode == LookupMode::OnDemand {
                    tracing::warn!(
                        "the page-table lookups stay attached: without walking every \
                         task's vmas pfnwatch cannot tell when none is needed: {e:#}"
                    );
                }
                lookups.mode = LookupMode::Always;
            }
        }
        lookups.stats.watched = lookups.watched()?;
        if lookups.mode == LookupMode::OnDemand && lookups.stats.attached {
            lookups.set_attached(false)?;
            if lookups.watched()? == 0 {
                lookups.detach_links(&mut watcher.ebpf);
                tracing::info!("page-table lookups on standby until a device is mapped");
                for p in &mut watcher.programs {
                    if on_demand(p.hook) && p.state == ProgramState::Attached {
                        p.state = ProgramState::Standby;
                    }
                }
            } else {
                lookups.set_attached(true)?;
            }
        }
        Ok(lookups)
    }

    pub fn mode(&self) -> LookupMode {
        self.mode
    }

    /// Waits for a wake-up from the kernel or the next check.
    pub async fn ready(&mut self) -> Result<Ready> {
        if self.mode == LookupMode::Always {
            // Nothing to attach or detach: the checks only heal.
            self.check.tick().await;
            return Ok(Ready::Check);
        }
        tokio::select! {
            guard = self.wake.readable_mut() => {
                guard.context("waiting on the lookup_wake ring buffer")?.clear_ready();
                Ok(Ready::Woken)
            }
            _ = self.check.tick() => Ok(Ready::Check),
        }
    }

    /// Once [`Lookups::ready`] returned: attach while a watched vma lives,
    /// detach after the grace period without one.
    pub fn handle(&mut self, ebpf: &mut Ebpf, why: Ready) -> Result<()> {
        self.heal(ebpf)?;
        if self.mode == LookupMode::Always {
            return Ok(());
        }
        let mut first_ns = None;
        let ring = self.wake.get_mut();
        while let Some(item) = ring.next() {
            if let Some(bytes) = item.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                let ns = u64::from_ne_bytes(bytes);
                first_ns = Some(first_ns.map_or(ns, |f: u64| f.min(ns)));
            }
        }
        self.stats.watched = self.watched()?;
        if !self.stats.attached {
            if let Some(ns) = first_ns {
                self.woken_late(why, ns);
            }
            // Attach for any wake-up, even one whose vma is gone already:
            // a process that maps its device briefly and often is then
            // watched through the grace period. A check that finds a
            // watched vma the wake-up ring had no room to say catches up.
            if self.stats.watched > 0 || first_ns.is_some() {
                self.attach(ebpf, first_ns)?;
            }
            return Ok(());
        }
        if self.stats.watched > 0 {
            self.idle_since = None;
            return Ok(());
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.grace {
            return Ok(());
        }
        // The counter only knows what the hooks announced: a vma split off
        // a watched one by a partial munmap or mprotect was not. Without
        // the walk the lookups stay attached, and try again a grace later.
        if let Err(e) = self.walk(ebpf) {
            tracing::warn!("the page-table lookups stay attached: {e:#}");
            self.idle_since = None;
            return Ok(());
        }
        self.stats.watched = self.watched()?;
        if self.stats.watched > 0 {
            self.idle_since = None;
            return Ok(());
        }
        // Say "detached" before detaching, then look again: a watched vma
        // made in between either saw the flag and woke us, or is counted.
        self.set_attached(false)?;
        if self.watched()? > 0 {
            self.set_attached(true)?;
            self.idle_since = None;
            return Ok(());
        }
        self.detach(ebpf);
        Ok(())
    }

    /// Schedules two walks when the inventory's programs missed calls, and
    /// runs the one due. The walks' announcements wake the lookups like
    /// any creation; what the second sweeps is counted by the kernel
    /// (`pfnwatch_inventory_frees_unseen_total`).
    fn heal(&mut self, ebpf: &mut Ebpf) -> Result<()> {
        let misses = bpf_stats::misses(ebpf, &self.inventory_programs);
        let Some(missed) = self.heal.check(misses, Instant::now()) else {
            return Ok(());
        };
        if missed > 0 {
            tracing::warn!(
                missed,
                "the kernel skipped calls of the inventory's programs (one was running on \
                 that CPU already, as on preemptible kernels when a task is preempted in \
                 it): walking every task's vmas to set the inventory right"
            );
        }
        // A heal that cannot walk is tried again at the next misses.
        if let Err(e) = self.walk(ebpf) {
            tracing::warn!("healing the inventory: {e:#}");
        }
        Ok(())
    }

    /// Runs `existing_vmas` over every task's vmas, numbered for the
    /// inventory's sweep. A walk that did not finish keeps its number for
    /// the next: the sweep counts on the last two walks having seen every
    /// task.
    fn walk(&mut self, ebpf: &mut Ebpf) -> Result<()> {
        self.state
            .set(abi::LOOKUPS_WALK, self.walk_number + 1, 0)
            .context("writing the lookups map")?;
        walk(ebpf).context("walking every task's vmas (iter/task_vma)")?;
        self.walk_number += 1;
        self.stats.walks += 1;
        Ok(())
    }

    /// Counts and says what a wake-up found after the fact: one the
    /// notification did not deliver, and a mapping that did not wait.
    fn woken_late(&mut self, why: Ready, wanted_ns: u64) {
        let after_ms = monotonic_ns().saturating_sub(wanted_ns) / 1_000_000;
        if why == Ready::Check {
            self.stats.late_wakeups += 1;
            tracing::info!(
                after_ms,
                "a device mapping's wake-up was found by the periodic check, \
                 not delivered by the kernel"
            );
        }
        if self.stats.watched == 0 {
            self.stats.unseen_mappings += 1;
            tracing::warn!(
                after_ms,
                "a device mapping was gone before the page-table lookups attached: \
                 lookups in it were not seen (--lookups always sees every one)"
            );
        }
    }

    fn watched(&self) -> Result<u64> {
        self.state
            .get(&abi::LOOKUPS_WATCHED, 0)
            .context("reading the lookups map")
    }

    fn set_attached(&mut self, attached: bool) -> Result<()> {
        self.state
            .set(abi::LOOKUPS_ATTACHED, u64::from(attached), 0)
            .context("writing the lookups map")
    }

    /// Attaches every lookup program; `wanted_ns`: when the kernel asked.
    fn attach(&mut self, ebpf: &mut Ebpf, wanted_ns: Option<u64>) -> Result<()> {
        // How long the wake-up took to reach us, and how long the kernel
        // took to attach: the two parts of the delay.
        let woken_ns = monotonic_ns();
        for spec in &self.programs {
            match loader::attach(ebpf, spec) {
                Ok(link) => self.links.push((spec, link)),
                // Loaded at start, so a refusal now is rare (the
                // trampoline full, memory): keep the others.
                Err(e) => tracing::warn!(program = spec.name, "attaching on demand: {e:#}"),
            }
        }
        self.set_attached(true)?;
        self.stats.attached = true;
        self.stats.attaches += 1;
        self.check = check_interval(CHECK_ATTACHED);
        self.idle_since = None;
        if let Some(ns) = wanted_ns {
            let delay = monotonic_ns().saturating_sub(ns);
            self.stats.last_attach_delay = Some(Duration::from_nanos(delay));
        }
        tracing::info!(
            watched = self.stats.watched,
            delay_us = self.stats.last_attach_delay.map(|d| d.as_micros()),
            woken_after_us = wanted_ns.map(|ns| woken_ns.saturating_sub(ns) / 1000),
            attach_us = monotonic_ns().saturating_sub(woken_ns) / 1000,
            "page-table lookups attached"
        );
        Ok(())
    }

    fn detach(&mut self, ebpf: &mut Ebpf) {
        self.detach_links(ebpf);
        self.stats.detaches += 1;
        tracing::info!(
            grace_s = self.grace.as_secs(),
            "page-table lookups detached: no device mapping left"
        );
    }

    fn detach_links(&mut self, ebpf: &mut Ebpf) {
        for (spec, link) in self.links.drain(..) {
            if let Err(e) = loader::detach(ebpf, spec, link) {
                tracing::warn!(program = spec.name, "detaching: {e:#}");
            }
        }
        self.stats.attached = false;
        self.idle_since = None;
        self.check = check_interval(CHECK_DETACHED);
    }
}

/// Runs `existing_vmas` over every task's vmas: each pfn mapping the
/// inventory lacks gets in (and sends its record). The program writes
/// nothing to the file; reading it to the end is the walk.
fn walk(ebpf: &mut Ebpf) -> Result<()> {
    let program: &mut Iter = ebpf
        .program_mut(abi::names::EXISTING_VMAS)
        .context("no existing_vmas program")?
        .try_into()?;
    let link = program.attach()?;
    let link = program.take_link(link)?;
    let mut file = link.into_file()?;
    let mut sink = Vec::new();
    file.read_to_end(&mut sink)?;
    Ok(())
}

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns()`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::programs::PROGRAMS;

    #[test]
    fn misses_ask_for_two_walks_a_second_apart_then_a_cooldown() {
        let t0 = Instant::now();
        // Misses from before start are no reason.
        let mut heal = Heal::new(5, t0);
        assert_eq!(heal.check(5, t0), None);
        assert_eq!(heal.check(7, t0), Some(2), "a walk at once");
        let soon = t0 + Duration::from_millis(500);
        assert_eq!(heal.check(7, soon), None, "not before the spacing");
        let t1 = t0 + Heal::SPACING;
        assert_eq!(heal.check(7, t1), Some(0), "the second walk");
        assert_eq!(
            heal.check(7, t1 + Duration::from_secs(60)),
            None,
            "no third"
        );
        // Missed again: the pair after the cooldown.
        let mut heal = Heal::new(0, t0);
        assert_eq!(heal.check(1, t0), Some(1));
        assert_eq!(heal.check(1, t1), Some(0));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(heal.check(3, t2), None, "within the cooldown");
        let t3 = t1 + Heal::COOLDOWN;
        assert_eq!(heal.check(3, t3), Some(2), "the misses kept for it");
        assert_eq!(heal.check(3, t3 + Heal::SPACING), Some(0));
    }

    #[test]
    fn misses_between_the_two_walks_ask_for_two_more() {
        let t0 = Instant::now();
        let mut heal = Heal::new(0, t0);
        assert_eq!(heal.check(1, t0), Some(1));
        let t1 = t0 + Heal::SPACING;
        assert_eq!(heal.check(3, t1), Some(2));
        let t2 = t1 + Heal::SPACING;
        assert_eq!(heal.check(3, t2), Some(0));
        assert_eq!(heal.check(3, t2 + Heal::SPACING), None);
    }

    #[test]
    fn the_on_demand_programs_are_the_lookups_and_the_walk() {
        let names: Vec<&str> = PROGRAMS
            .iter()
            .filter(|p| on_demand(p.hook))
            .map(|p| p.name)
            .collect();
        assert_eq!(
            names,
            [
                "vm_normal_page_exit",
                "vm_normal_page_pmd_exit",
                "vm_normal_page_pud_exit",
                "folio_walk_start_exit"
            ]
        );
    }

    #[test]
    fn the_safe_fops_fit_their_slots() {
        assert!(SAFE_FOPS.len() <= abi::SAFE_FOPS_SLOTS);
    }

    #[test]
    fn modes_read_as_written() {
        use clap::ValueEnum;
        for mode in LookupMode::value_variants() {
            assert_eq!(
                LookupMode::from_str(&mode.to_string(), false).ok(),
                Some(*mode)
            );
        }
        assert_eq!(LookupMode::default(), LookupMode::OnDemand);
    }
}
