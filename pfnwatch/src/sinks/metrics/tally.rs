//! What the daemon counts in user space: records, rule hits, the pfn
//! mappings by driver (created, gone, live), alerts by driver, reloads.

use super::labels::{Bounded, MAX_SOURCES, OTHER, vma_label};
use crate::pipeline::alert::Alert;
use crate::pipeline::{Outcome, Sink};
use crate::rules::{RuleId, Severity};
use anyhow::Result;
use pfnwatch_common::Family;
use pfnwatch_common::abi::INVENTORY_SLOTS;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Between two looks at the kernel's inventory: a gone record on its way
/// through the rings is taken in long before.
pub const RECONCILE_SPACING: Duration = Duration::from_secs(5);

/// A pfn mapping's labels: kind of vma, driver, device.
pub type Source = (&'static str, String, String);

/// A live mapping the inventory reported created: its labels and size.
#[derive(Clone, Debug)]
struct Live {
    source: Source,
    bytes: u64,
}

/// What the daemon counts in user space, kept across reloads: a sink of
/// every outcome and alert.
#[derive(Debug)]
pub struct Tally {
    pub records: u64,
    /// Rule hits before duplicate collapsing.
    pub hits: BTreeMap<(RuleId, Severity), u64>,
    /// Created, by origin ("mmap", "fork" or "existing") and source.
    pub(super) mappings: BTreeMap<(&'static str, Source), u64>,
    pub(super) removed: BTreeMap<Source, u64>,
    /// Live mappings by source: count and bytes.
    pub(super) live: BTreeMap<Source, (u64, u64)>,
    /// Live mappings by inventory id (ids grow), for their gone records;
    /// as many as the kernel's inventory holds. A gone record lost to a
    /// full ring buffer would leave its vma here: past the bound the
    /// oldest is forgotten.
    live_ids: BTreeMap<u64, Live>,
    /// Reconciliation with the kernel's inventory: the live ids it lacked
    /// last time, those given up on (a late gone record for one is not
    /// counted twice), when it was last done, and how many were.
    suspects: BTreeSet<u64>,
    forgotten: BTreeSet<u64>,
    reconciled_at: Option<Instant>,
    pub(super) reconciled: u64,
    pub(super) alerts_by_driver: BTreeMap<(RuleId, String), u64>,
    sources: Bounded<(String, String)>,
    drivers: Bounded<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_ok: bool,
    pub restart_required: bool,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            records: 0,
            hits: BTreeMap::new(),
            mappings: BTreeMap::new(),
            removed: BTreeMap::new(),
            live: BTreeMap::new(),
            live_ids: BTreeMap::new(),
            suspects: BTreeSet::new(),
            forgotten: BTreeSet::new(),
            reconciled_at: None,
            reconciled: 0,
            alerts_by_driver: BTreeMap::new(),
            sources: Bounded::new(MAX_SOURCES),
            drivers: Bounded::new(MAX_SOURCES),
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_ok: true,
            restart_required: false,
        }
    }
}

impl Tally {
    /// Sets the live mappings right by the kernel's inventory (`kernel`: the
    /// ids it holds), at most every [`RECONCILE_SPACING`]: a mapping the
    /// kernel no longer holds at two looks in a row is gone, its gone
    /// record lost on the way. Returns how many were given up on.
    pub fn reconcile(&mut self, kernel: &BTreeSet<u64>, now: Instant) -> u64 {
        if self
            .reconciled_at
            .is_some_and(|at| now.duration_since(at) < RECONCILE_SPACING)
        {
            return 0;
        }
        self.reconciled_at = Some(now);
        let absent: BTreeSet<u64> = self
            .live_ids
            .keys()
            .filter(|id| !kernel.contains(id))
            .copied()
            .collect();
        let lost: Vec<u64> = absent.intersection(&self.suspects).copied().collect();
        let mut n = 0;
        for id in lost {
            if let Some(l) = self.live_ids.remove(&id) {
                self.gone(l);
                if self.forgotten.len() >= INVENTORY_SLOTS {
                    self.forgotten.pop_first();
                }
                self.forgotten.insert(id);
                n += 1;
            }
        }
        self.suspects = absent.difference(&self.forgotten).copied().collect();
        self.reconciled += n;
        n
    }

    /// A live mapping gone.
    fn gone(&mut self, l: Live) {
        *self.removed.entry(l.source.clone()).or_default() += 1;
        if let Some(live) = self.live.get_mut(&l.source) {
            live.0 = live.0.saturating_sub(1);
            live.1 = live.1.saturating_sub(l.bytes);
        }
    }

    /// A created mapping's labels, the driver named once by host context.
    fn source(&mut self, o: &Outcome) -> Source {
        let r = &o.record;
        let device = match &r.file {
            None => "none".to_owned(),
            Some(f) if f.rdev.major != 0 || f.rdev.minor != 0 => f.rdev.to_string(),
            // A PCI BAR file's directory is its device's address.
            Some(f) if f.name.starts_with("resource") => f.parent.clone(),
            Some(f) => f.name.clone(),
        };
        let driver = o.host.driver.as_deref().unwrap_or("unknown");
        let (driver, device) = self
            .sources
            .admit(&(driver.to_owned(), device))
            .unwrap_or_else(|| (OTHER.to_owned(), OTHER.to_owned()));
        (vma_label(r.class), driver, device)
    }
}

impl Sink for Tally {
    /// A record read from the ring buffer, with the driver named once by
    /// the pipeline's host context.
    fn outcome(&mut self, o: &Outcome) -> Result<()> {
        self.records += 1;
        for hit in &o.hits {
            *self.hits.entry((hit.rule.id, hit.severity)).or_default() += 1;
        }
        let r = &o.record;
        match r.hook.family() {
            Family::VmaCreated => {
                let source = self.source(o);
                let origin = match (r.fork, r.existing) {
                    (true, _) => "fork",
                    (_, true) => "existing",
                    _ => "mmap",
                };
                *self.mappings.entry((origin, source.clone())).or_default() += 1;
                let live = self.live.entry(source.clone()).or_default();
                live.0 += 1;
                // A record's size is whatever the kernel wrote: saturate,
                // never wrap (the gauge shows i64::MAX past it anyway).
                live.1 = live.1.saturating_add(r.size);
                // The kernel tracks as many: more means gone records were
                // lost, and the oldest vma is the likeliest gone.
                if self.live_ids.len() >= INVENTORY_SLOTS {
                    self.live_ids.pop_first();
                }
                self.live_ids.insert(
                    r.vma_id,
                    Live {
                        source,
                        bytes: r.size,
                    },
                );
            }
            Family::VmaGone => {
                let known = self.live_ids.remove(&r.vma_id);
                // Given up on by a reconciliation already: counted then.
                if known.is_none() && self.forgotten.remove(&r.vma_id) {
                    return Ok(());
                }
                match known {
                    Some(l) => self.gone(l),
                    None => {
                        let source = (
                            vma_label(r.class),
                            "unknown".to_owned(),
                            "unknown".to_owned(),
                        );
                        *self.removed.entry(source).or_default() += 1;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An alert written (a follow-up stands for `count` hits).
    fn alert(&mut self, a: &Alert) -> Result<()> {
        let driver = a.driver.clone().unwrap_or_else(|| "unknown".to_owned());
        let driver = self
            .drivers
            .admit(&driver)
            .unwrap_or_else(|| OTHER.to_owned());
        *self.alerts_by_driver.entry((a.rule, driver)).or_default() += a.count;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::enrich::Enrichment;
    use crate::kernel::decode::{DevNum, Record};
    use pfnwatch_common::class::{COW, PFNMAP};
    use pfnwatch_common::{Class, Hook};

    /// A vma of `hook`'s (a remap, or the inventory's created or gone) on a
    /// BAR-like file in `parent`.
    pub fn vma(hook: Hook, parent: &str, rdev: DevNum, class: u16) -> Record {
        Record {
            ts_ns: 1,
            pid: 9,
            tgid: 9,
            comm: "x".into(),
            vm_end: 0x4000,
            size: 0x4000,
            file: Some(crate::kernel::decode::test_file(
                "resource0",
                parent,
                (rdev.major, rdev.minor),
            )),
            ..Record::new(hook, Class(class))
        }
    }

    /// A record as the pipeline hands it over, with its driver named.
    pub fn outcome(record: Record, driver: Option<&str>) -> Outcome {
        Outcome {
            record,
            hits: Vec::new(),
            host: Enrichment {
                driver: driver.map(str::to_owned),
                ..Enrichment::default()
            },
        }
    }

    fn source(driver: &str, device: &str) -> Source {
        ("pfnmap", driver.to_owned(), device.to_owned())
    }

    #[test]
    fn live_mappings_the_kernel_no_longer_holds_twice_are_gone_once() {
        let mut tally = Tally::default();
        let dev = DevNum { major: 1, minor: 1 };
        for id in [7, 8] {
            let mut created = vma(Hook::PerfEventMmap, "/", dev, PFNMAP);
            created.vma_id = id;
            tally.outcome(&outcome(created, Some("mem"))).unwrap();
        }
        let mem = ("pfnmap", "mem".to_owned(), "1:1".to_owned());
        assert_eq!(tally.live[&mem].0, 2);
        let t0 = Instant::now();
        let kernel = BTreeSet::from([8]);
        // 7's gone record lost: the first look only suspects it.
        assert_eq!(tally.reconcile(&kernel, t0), 0);
        assert_eq!(tally.live[&mem].0, 2);
        // Too soon for a second look.
        assert_eq!(tally.reconcile(&kernel, t0 + Duration::from_secs(1)), 0);
        let t1 = t0 + RECONCILE_SPACING;
        assert_eq!(tally.reconcile(&kernel, t1), 1);
        assert_eq!(tally.live[&mem].0, 1, "8 stays live");
        assert_eq!(tally.removed[&mem], 1);
        assert_eq!(tally.reconciled, 1);
        // Its gone record arriving after all is not counted again.
        let mut gone = Record::new(Hook::VmAreaFree, Class(PFNMAP));
        gone.vma_id = 7;
        tally.outcome(&outcome(gone.clone(), None)).unwrap();
        assert_eq!(tally.removed.len(), 1, "{:?}", tally.removed);
        assert_eq!(tally.removed[&mem], 1);
        // A mapping absent at one look and back at the next (its creation
        // still in the rings) is no suspect any more.
        let mut created = vma(Hook::PerfEventMmap, "/", dev, PFNMAP);
        created.vma_id = 9;
        tally.outcome(&outcome(created, Some("mem"))).unwrap();
        let t2 = t1 + RECONCILE_SPACING;
        assert_eq!(tally.reconcile(&kernel, t2), 0);
        let t3 = t2 + RECONCILE_SPACING;
        assert_eq!(tally.reconcile(&BTreeSet::from([8, 9]), t3), 0);
        let t4 = t3 + RECONCILE_SPACING;
        assert_eq!(tally.reconcile(&BTreeSet::from([8, 9]), t4), 0);
        assert_eq!(tally.live[&mem].0, 2);
        // A gone record that arrives normally leaves nothing to reconcile.
        gone.vma_id = 9;
        tally.outcome(&outcome(gone, None)).unwrap();
        let t5 = t4 + RECONCILE_SPACING;
        assert_eq!(tally.reconcile(&BTreeSet::from([8]), t5), 0);
        assert_eq!(tally.live[&mem].0, 1);
    }

    #[test]
    fn mappings_are_counted_created_gone_and_live() {
        let mut tally = Tally::default();
        let dev = DevNum { major: 1, minor: 1 };
        let mut created = vma(Hook::PerfEventMmap, "/", dev, PFNMAP | COW);
        created.vma_id = 7;
        tally
            .outcome(&outcome(created.clone(), Some("mem")))
            .unwrap();
        let mut forked = created.clone();
        forked.hook = Hook::CopyPageRange;
        forked.vma_id = 8;
        forked.fork = true;
        tally.outcome(&outcome(forked, Some("mem"))).unwrap();
        let mem = ("pfnmap", "mem".to_owned(), "1:1".to_owned());
        assert_eq!(tally.mappings[&("mmap", mem.clone())], 1);
        assert_eq!(tally.mappings[&("fork", mem.clone())], 1);
        assert_eq!(tally.live[&mem], (2, 0x8000));
        // A gone record carries no file: its id names the mapping.
        let mut gone = Record::new(Hook::VmAreaFree, Class(PFNMAP | COW));
        gone.vma_id = 7;
        gone.size = 0x4000;
        tally.outcome(&outcome(gone.clone(), None)).unwrap();
        assert_eq!(tally.removed[&mem], 1);
        assert_eq!(tally.live[&mem], (1, 0x4000));
        // One the inventory never reported created (a lost record).
        gone.vma_id = 99;
        tally.outcome(&outcome(gone, None)).unwrap();
        let unknown = ("pfnmap", "unknown".to_owned(), "unknown".to_owned());
        assert_eq!(tally.removed[&unknown], 1);
        assert_eq!(tally.live[&mem], (1, 0x4000), "the known ones stay");
        // Remaps and lookups are no mappings of their own.
        tally
            .outcome(&outcome(
                vma(Hook::RemapPfnRange, "/", dev, PFNMAP),
                Some("mem"),
            ))
            .unwrap();
        assert_eq!(tally.mappings.values().sum::<u64>(), 2);
        assert_eq!(tally.records, 5);
    }

    #[test]
    fn live_mappings_whose_gone_record_was_lost_are_forgotten_past_the_bound() {
        let mut tally = Tally::default();
        let dev = DevNum { major: 1, minor: 1 };
        let mut created = vma(Hook::PerfEventMmap, "/", dev, PFNMAP);
        for id in 1..=(INVENTORY_SLOTS as u64 + 10) {
            created.vma_id = id;
            tally
                .outcome(&outcome(created.clone(), Some("mem")))
                .unwrap();
        }
        assert_eq!(tally.live_ids.len(), INVENTORY_SLOTS);
        assert_eq!(tally.live_ids.keys().next(), Some(&11), "the oldest go");
    }

    #[test]
    fn live_bytes_saturate() {
        // Found reviewing what the fuzz targets feed in (the input is
        // fuzz/corpus/record_decode/live-bytes-overflow.events): two created
        // records of 2^63 bytes each overflowed the sum.
        let mut tally = Tally::default();
        let dev = DevNum { major: 1, minor: 1 };
        for id in [1, 2] {
            let mut created = vma(Hook::PerfEventMmap, "/", dev, PFNMAP);
            created.vma_id = id;
            created.size = 1 << 63;
            tally.outcome(&outcome(created, Some("mem"))).unwrap();
        }
        let mem = ("pfnmap", "mem".to_owned(), "1:1".to_owned());
        assert_eq!(tally.live[&mem], (2, u64::MAX));
    }

    #[test]
    fn sources_past_the_limit_count_as_other_and_keep_their_series() {
        let mut tally = Tally::default();
        for minor in 0..(MAX_SOURCES as u32 + 3) {
            let r = vma(
                Hook::PerfEventMmap,
                "x",
                DevNum { major: 10, minor },
                PFNMAP,
            );
            tally.outcome(&outcome(r, Some("misc"))).unwrap();
        }
        // An early source seen again keeps its own series.
        let r = vma(
            Hook::PerfEventMmap,
            "x",
            DevNum {
                major: 10,
                minor: 0,
            },
            PFNMAP,
        );
        tally.outcome(&outcome(r, Some("misc"))).unwrap();
        let own: u64 = tally
            .mappings
            .iter()
            .filter(|((_, (_, d, _)), _)| d != OTHER)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(own, MAX_SOURCES as u64 + 1);
        assert_eq!(tally.mappings[&("mmap", source(OTHER, OTHER))], 3);
        assert_eq!(tally.mappings[&("mmap", source("misc", "10:0"))], 2);
    }
}
