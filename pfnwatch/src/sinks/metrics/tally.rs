//! What the daemon counts in user space: records, rule hits, mappings by
//! driver, alerts by driver, reloads.

use super::labels::{Bounded, MAX_SOURCES, OTHER};
use crate::pipeline::alert::Alert;
use crate::pipeline::{Outcome, Sink};
use crate::rules::{RuleId, Severity};
use anyhow::Result;
use pfnwatch_common::class::ERROR;
use pfnwatch_common::{Family, Hook};
use std::collections::BTreeMap;

/// What the daemon counts in user space, kept across reloads: a sink of
/// every outcome and alert.
#[derive(Debug)]
pub struct Tally {
    pub records: u64,
    /// Rule hits before duplicate collapsing.
    pub hits: BTreeMap<(RuleId, Severity), u64>,
    pub(super) mappings: BTreeMap<(Hook, String, String), u64>,
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

impl Sink for Tally {
    /// A record read from the ring buffer, with the driver named once by
    /// the pipeline's host context.
    fn outcome(&mut self, o: &Outcome) -> Result<()> {
        self.records += 1;
        for hit in &o.hits {
            *self.hits.entry((hit.rule.id, hit.severity)).or_default() += 1;
        }
        let r = &o.record;
        if r.hook.family() != Family::Remap || r.class.has(ERROR) {
            return Ok(());
        }
        let device = match &r.file {
            None => "none".to_owned(),
            Some(f) if f.rdev.major != 0 || f.rdev.minor != 0 => f.rdev.to_string(),
            // A PCI BAR file's directory is its device's address.
            Some(f) if f.name.starts_with("resource") => f.parent.clone(),
            Some(f) => f.name.clone(),
        };
        let driver = o.host.driver.as_deref().unwrap_or("unknown");
        let source = (driver.to_owned(), device);
        let (driver, device) = self
            .sources
            .admit(&source)
            .unwrap_or_else(|| (OTHER.to_owned(), OTHER.to_owned()));
        *self.mappings.entry((r.hook, driver, device)).or_default() += 1;
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
    use pfnwatch_common::Class;
    use pfnwatch_common::class::PFNMAP;

    pub fn remap(parent: &str, rdev: DevNum, class: u16) -> Record {
        Record {
            ts_ns: 1,
            pid: 9,
            tgid: 9,
            comm: "x".into(),
            vm_end: 0x4000,
            size: 0x4000,
            level: pfnwatch_common::Level::Pte,
            file: Some(crate::kernel::decode::test_file(
                "resource0",
                parent,
                (rdev.major, rdev.minor),
            )),
            ..Record::new(Hook::RemapPfnRange, Class(class))
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

    #[test]
    fn sources_past_the_limit_count_as_other_and_keep_their_series() {
        let mut tally = Tally::default();
        for minor in 0..(MAX_SOURCES as u32 + 3) {
            let r = remap("x", DevNum { major: 10, minor }, PFNMAP);
            tally.outcome(&outcome(r, Some("misc"))).unwrap();
        }
        // An early source seen again keeps its own series.
        let r = remap(
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
            .filter(|((_, d, _), _)| d != OTHER)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(own, MAX_SOURCES as u64 + 1);
        assert_eq!(
            tally.mappings[&(Hook::RemapPfnRange, OTHER.to_owned(), OTHER.to_owned())],
            3
        );
        assert_eq!(
            tally.mappings[&(Hook::RemapPfnRange, "misc".to_owned(), "10:0".to_owned())],
            2
        );
    }
}
