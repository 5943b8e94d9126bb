//! The kernel's per-CPU counters, summed into one snapshot.

use anyhow::{Context, Result};
use aya::Ebpf;
use aya::maps::{MapData, PerCpuArray};
use pfnwatch_common::{Class, Hook, abi};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Calls per hook and class.
    pub calls: BTreeMap<Hook, BTreeMap<Class, u64>>,
    /// Failed calls per hook and errno (the last slot collects larger errnos).
    #[serde(deserialize_with = "errno_keys")]
    pub errors: BTreeMap<Hook, BTreeMap<u32, u64>>,
    /// Records lost because the ring buffers were full, of every kind.
    pub drops: u64,
    /// Of those, the records that may have been a warning or critical hit
    /// (both their own ring and the shared one were full).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub urgent_drops: u64,
    /// Pfn-mapping vmas the kernel's inventory had no room for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inventory_full: u64,
    /// Tracked vmas whose free no program saw, found gone by a walk.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frees_unseen: u64,
    /// Calls the kernel skipped per hook: its program was running on that
    /// CPU already (`kernel::bpf_stats`). Not in the maps: the session
    /// adds them from the programs' info.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub misses: BTreeMap<Hook, u64>,
}

impl Counts {
    pub fn read(ebpf: &Ebpf) -> Result<Counts> {
        let mut counts = Counts::default();
        for (idx, total) in sums(ebpf, abi::names::COUNTS)? {
            if let (Some((hook, class)), true) = (abi::counts_slot(idx), total > 0) {
                counts.calls.entry(hook).or_default().insert(class, total);
            }
        }
        for (idx, total) in sums(ebpf, abi::names::ERRORS)? {
            if let (Some((hook, errno)), true) = (abi::errors_slot(idx), total > 0) {
                counts.errors.entry(hook).or_default().insert(errno, total);
            }
        }
        for (slot, total) in sums(ebpf, abi::names::DROPS)? {
            match slot as u32 {
                abi::LOSS_RINGBUF => counts.drops += total,
                abi::LOSS_URGENT => {
                    counts.drops += total;
                    counts.urgent_drops = total;
                }
                abi::LOSS_INVENTORY => counts.inventory_full = total,
                abi::LOSS_FREE_UNSEEN => counts.frees_unseen = total,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// Only the records lost because the ring buffers were full: one map
    /// lookup, cheap enough to do after every batch of records.
    pub fn read_drops(ebpf: &Ebpf) -> Result<u64> {
        Ok(sums(ebpf, abi::names::DROPS)?
            .filter(|(slot, _)| matches!(*slot as u32, abi::LOSS_RINGBUF | abi::LOSS_URGENT))
            .map(|(_, v)| v)
            .sum())
    }

    /// Calls of one hook, all classes.
    pub fn hook_total(&self, hook: Hook) -> u64 {
        self.calls.get(&hook).map_or(0, |m| m.values().sum())
    }

    pub fn get(&self, hook: Hook, class: Class) -> u64 {
        self.calls
            .get(&hook)
            .and_then(|m| m.get(&class))
            .copied()
            .unwrap_or(0)
    }

    /// What happened since `earlier` (counters only grow).
    pub fn since(&self, earlier: &Counts) -> Counts {
        fn diff<K: Ord + Copy, L: Ord + Copy>(
            now: &BTreeMap<K, BTreeMap<L, u64>>,
            then: &BTreeMap<K, BTreeMap<L, u64>>,
        ) -> BTreeMap<K, BTreeMap<L, u64>> {
            let mut out = BTreeMap::new();
            for (k, inner) in now {
                for (l, v) in inner {
                    let before = then.get(k).and_then(|m| m.get(l)).copied().unwrap_or(0);
                    let d = v.saturating_sub(before);
                    if d > 0 {
                        out.entry(*k).or_insert_with(BTreeMap::new).insert(*l, d);
                    }
                }
            }
            out
        }
        Counts {
            calls: diff(&self.calls, &earlier.calls),
            errors: diff(&self.errors, &earlier.errors),
            drops: self.drops.saturating_sub(earlier.drops),
            urgent_drops: self.urgent_drops.saturating_sub(earlier.urgent_drops),
            inventory_full: self.inventory_full.saturating_sub(earlier.inventory_full),
            frees_unseen: self.frees_unseen.saturating_sub(earlier.frees_unseen),
            misses: self
                .misses
                .iter()
                .map(|(hook, n)| {
                    let before = earlier.misses.get(hook).copied().unwrap_or(0);
                    (*hook, n.saturating_sub(before))
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// JSON writes the errno keys as strings. Read straight from JSON, serde
/// turns them back into numbers; inside a tagged enum (trace's lines, the
/// capture's entries) the value is buffered first and it does not, so the
/// keys are parsed here.
fn errno_keys<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<Hook, BTreeMap<u32, u64>>, D::Error> {
    use serde::de::Error;
    let raw = BTreeMap::<Hook, BTreeMap<String, u64>>::deserialize(d)?;
    raw.into_iter()
        .map(|(hook, errnos)| {
            let errnos = errnos
                .into_iter()
                .map(|(errno, n)| {
                    errno.parse().map(|e| (e, n)).map_err(|_| {
                        D::Error::custom(format!("{hook}: errno {errno:?} is not a number"))
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok((hook, errnos))
        })
        .collect()
}

/// (index, sum over CPUs) for every slot of a per-CPU u64 array.
fn sums<'a>(ebpf: &'a Ebpf, name: &str) -> Result<impl Iterator<Item = (usize, u64)> + 'a> {
    let map = ebpf
        .map(name)
        .with_context(|| format!("the object has no map {name:?}"))?;
    let array: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(map).with_context(|| format!("map {name:?}"))?;
    let values: Vec<u64> = array
        .iter()
        .map(|per_cpu| per_cpu.map(|v| v.iter().sum()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading map {name:?}"))?;
    Ok(values.into_iter().enumerate())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(Hook, u16, u64)]) -> Counts {
        let mut c = Counts::default();
        for (h, cl, v) in entries {
            c.calls.entry(*h).or_default().insert(Class(*cl), *v);
        }
        c
    }

    #[test]
    fn since_keeps_only_growth() {
        let then = counts(&[(Hook::VmNormalPage, 4, 10), (Hook::RemapPfnRange, 0, 1)]);
        let mut now = counts(&[
            (Hook::VmNormalPage, 4, 14),
            (Hook::RemapPfnRange, 0, 1),
            (Hook::FolioWalkStart, 16, 2),
        ]);
        now.drops = 3;
        let mut then = then;
        then.misses.insert(Hook::VmAreaFree, 2);
        now.misses.insert(Hook::VmAreaFree, 2);
        now.misses.insert(Hook::VmNormalPage, 5);
        let d = now.since(&then);
        assert_eq!(
            d.misses,
            BTreeMap::from([(Hook::VmNormalPage, 5)]),
            "only the hooks that missed more"
        );
        assert_eq!(d.get(Hook::VmNormalPage, Class(4)), 4);
        assert_eq!(d.get(Hook::RemapPfnRange, Class(0)), 0);
        assert!(!d.calls.contains_key(&Hook::RemapPfnRange));
        assert_eq!(d.hook_total(Hook::FolioWalkStart), 2);
        assert_eq!(d.drops, 3);
    }

    #[test]
    fn serializes_by_name() {
        let c = counts(&[(
            Hook::VmNormalPage,
            pfnwatch_common::class::PFNMAP
                | pfnwatch_common::class::SPECIAL
                | pfnwatch_common::class::NO_PAGE,
            4,
        )]);
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            json.contains(r#""vm_normal_page":{"pfnmap+special+no_page":4}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Counts>(&json).unwrap(), c);
        assert!(
            !json.contains("misses"),
            "none: left out, as older captures have it"
        );
        let mut c = c;
        c.misses.insert(Hook::VmNormalPage, 3);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""misses":{"vm_normal_page":3}"#), "{json}");
        assert_eq!(serde_json::from_str::<Counts>(&json).unwrap(), c);
        // Errno keys survive a round trip, buffered (as in a tagged enum) or not.
        c.errors
            .entry(Hook::RemapPfnRange)
            .or_default()
            .insert(22, 1);
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            json.contains(r#""errors":{"remap_pfn_range":{"22":1}}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Counts>(&json).unwrap(), c);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::from_value::<Counts>(value).unwrap(), c);
        let bad = json.replace(r#"{"22":1}"#, r#"{"x":1}"#);
        let err = serde_json::from_str::<Counts>(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("errno \"x\""), "{err}");
    }
}
