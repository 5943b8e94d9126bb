//! Collapsing duplicate alerts: the same rule, process, device and call path
//! within a window is one alert with a count, so a looping driver cannot
//! flood the log. The first occurrence goes out at once; the duplicates
//! that follow within the window go out as one follow-up with their count.
//! A rule about a vma rather than a call (`once_per_vma`) alerts once per
//! vma and process, for as long as pfnwatch remembers the vma.

use super::alert::Alert;
use crate::rules::RuleId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

/// A window's identity: the rule and process, and a digest of the device,
/// file and call path. Small on purpose: up to [`WINDOWS_OPEN`] of them live
/// at once (with a digest, not the strings, a window takes 32 bytes of
/// table, not 480 and its strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    rule: RuleId,
    tgid: u32,
    /// Keyed with this process's random seed: nobody can make two
    /// different call paths collide on purpose.
    digest: u64,
}

impl Key {
    fn of(a: &Alert, seed: &RandomState) -> Key {
        Key {
            rule: a.rule,
            tgid: a.tgid,
            digest: seed.hash_one((&a.device, &a.file, &a.stack)),
        }
    }
}

struct Open {
    /// The last duplicate seen, carrying the count of duplicates so far;
    /// boxed: most windows never see one, and an alert is 400 bytes.
    pending: Option<Box<Alert>>,
    window_end: u64,
}

/// A vma a once-per-vma rule alerted about: a seeded digest of rule,
/// process, the inventory's id (0 when unknown: then the range alone tells
/// vmas apart), start and end. 8 bytes, not 32: [`VMAS_REMEMBERED`] of them
/// are kept, twice (the set and the order).
type VmaKey = u64;

/// Vmas remembered for once-per-vma rules before the oldest is forgotten
/// (and may alert again): a bound on memory, not a window.
pub const VMAS_REMEMBERED: usize = 4096;
/// Collapsing windows open at once: past it (thousands of processes
/// alerting within one window) the window closing soonest is closed early,
/// its follow-up sent.
pub const WINDOWS_OPEN: usize = 4096;

pub struct Dedup {
    window_ns: u64,
    open: HashMap<Key, Open>,
    seed: RandomState,
    /// No open window ends before this: expire need not look at them
    /// (it runs once per record).
    next_end: u64,
    vmas: HashSet<VmaKey>,
    vma_order: VecDeque<VmaKey>,
}

impl Dedup {
    pub fn new(window: std::time::Duration) -> Dedup {
        Dedup {
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            open: HashMap::new(),
            seed: RandomState::new(),
            next_end: u64::MAX,
            // Full size at once: the tables fill as processes come and go,
            // and growing them later would read as the daemon growing.
            vmas: HashSet::with_capacity(VMAS_REMEMBERED + 1),
            vma_order: VecDeque::with_capacity(VMAS_REMEMBERED + 1),
        }
    }

    /// Takes an alert; returns what is due now: expired follow-ups first,
    /// then this alert if it opens a new window.
    pub fn push(&mut self, alert: Alert) -> Vec<Alert> {
        let mut out = self.expire(alert.first_ns);
        // A vma's rule: its first alert goes out, nothing more (no window,
        // no follow-up counting the vma's every call).
        if alert.rule.rule().once_per_vma {
            if self.first_for_vma(&alert) {
                out.push(alert);
            }
            return out;
        }
        let key = Key::of(&alert, &self.seed);
        match self.open.get_mut(&key) {
            Some(open) => {
                let pending = open.pending.get_or_insert_with(|| {
                    Box::new(Alert {
                        count: 0,
                        repeat: true,
                        first_ns: alert.first_ns,
                        time: alert.time.clone(),
                        ..alert.clone()
                    })
                });
                pending.count += alert.count;
                pending.last_ns = alert.last_ns;
            }
            None => {
                if self.open.len() >= WINDOWS_OPEN {
                    out.extend(self.close_soonest());
                }
                let window_end = alert.first_ns.saturating_add(self.window_ns);
                self.next_end = self.next_end.min(window_end);
                self.open.insert(
                    key,
                    Open {
                        pending: None,
                        window_end,
                    },
                );
                out.push(alert);
            }
        }
        out
    }

    /// Closes the window that would end first; its follow-up, if any.
    fn close_soonest(&mut self) -> Option<Alert> {
        let key = self
            .open
            .iter()
            .min_by_key(|(_, open)| open.window_end)
            .map(|(key, _)| *key)?;
        self.open.remove(&key)?.pending.map(|a| *a)
    }

    /// Whether `alert` is the first of its once-per-vma rule for its vma;
    /// remembers the vma.
    fn first_for_vma(&mut self, alert: &Alert) -> bool {
        let key = self.seed.hash_one((
            alert.rule,
            alert.tgid,
            alert.vma_id,
            alert.vm_start,
            alert.vm_end,
        ));
        if !self.vmas.insert(key) {
            return false;
        }
        self.vma_order.push_back(key);
        if self.vma_order.len() > VMAS_REMEMBERED
            && let Some(old) = self.vma_order.pop_front()
        {
            self.vmas.remove(&old);
        }
        true
    }

    /// Closes the windows that ended by `now_ns`; returns their follow-ups.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Alert> {
        let mut due = Vec::new();
        if now_ns < self.next_end {
            return due;
        }
        let mut next_end = u64::MAX;
        self.open.retain(|_, open| {
            if open.window_end > now_ns {
                next_end = next_end.min(open.window_end);
                return true;
            }
            due.extend(open.pending.take().map(|a| *a));
            false
        });
        self.next_end = next_end;
        due.sort_by_key(|a| a.first_ns);
        due
    }

    /// Everything still pending (at shutdown or the end of a replay).
    pub fn flush(&mut self) -> Vec<Alert> {
        self.expire(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Severity;
    use pfnwatch_common::{Class, Hook};

    fn alert(rule: RuleId, tgid: u32, ns: u64, stack: &[&str]) -> Alert {
        Alert {
            rule,
            name: "n".into(),
            severity: Severity::Warning,
            time: "t".into(),
            first_ns: ns,
            last_ns: ns,
            count: 1,
            repeat: false,
            hook: Hook::VmNormalPage,
            class: Class(0),
            pid: tgid,
            tgid,
            comm: "c".into(),
            cgroup_id: 1,
            cgroup: None,
            container: None,
            file: Some("f".into()),
            device: Some("10:1".into()),
            driver: None,
            handlers: None,
            vm_start: 0,
            vm_end: 0,
            vma_id: 0,
            vm_flags: 0,
            vm_flags_names: vec![],
            addr: 0,
            pfn: None,
            vm_pgoff: 0,
            expected_pfn: 0,
            stack: stack.iter().map(|s| s.to_string()).collect(),
            explanation: String::new(),
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn duplicates_in_a_window_become_one_follow_up_with_a_count() {
        let mut d = Dedup::new(std::time::Duration::from_secs(10));
        assert_eq!(d.push(alert(RuleId::R2, 1, S, &["f"])).len(), 1);
        for i in 2..=5 {
            assert!(d.push(alert(RuleId::R2, 1, i * S, &["f"])).is_empty());
        }
        // Another process, rule or call path is another alert.
        assert_eq!(d.push(alert(RuleId::R2, 2, 6 * S, &["f"])).len(), 1);
        assert_eq!(d.push(alert(RuleId::R3, 1, 6 * S, &["f"])).len(), 1);
        assert_eq!(d.push(alert(RuleId::R2, 1, 6 * S, &["g"])).len(), 1);
        // So is another device or file.
        let mut other = alert(RuleId::R2, 1, 6 * S, &["f"]);
        other.device = Some("10:99".into());
        assert_eq!(d.push(other.clone()).len(), 1);
        other.file = Some("/dev/other".into());
        assert_eq!(d.push(other).len(), 1);
        // The window of the first closes at 11 s: its follow-up is due.
        let due = d.push(alert(RuleId::R2, 1, 12 * S, &["f"]));
        assert_eq!(due.len(), 2, "{due:?}");
        assert!(due[0].repeat);
        assert_eq!(due[0].count, 4);
        assert_eq!((due[0].first_ns, due[0].last_ns), (2 * S, 5 * S));
        assert!(!due[1].repeat, "the 12 s alert opens a new window");
        // Windows without duplicates close silently.
        assert!(d.expire(100 * S).iter().all(|a| a.repeat));
    }

    #[test]
    fn once_per_vma_rules_alert_once_per_vma_and_process() {
        let mut d = Dedup::new(std::time::Duration::from_secs(1));
        let at = |tgid, vm_start, ns| Alert {
            vm_start,
            vm_end: vm_start + 0x4000,
            ..alert(RuleId::R8, tgid, ns, &["f"])
        };
        assert_eq!(d.push(at(1, 0x1000, S)).len(), 1);
        // Later lookups of the same vma, even after the window: nothing.
        assert!(d.push(at(1, 0x1000, 2 * S)).is_empty());
        assert!(d.push(at(1, 0x1000, 60 * S)).is_empty());
        // The forked child's copy, another vma: once each.
        assert_eq!(d.push(at(2, 0x1000, 61 * S)).len(), 1);
        assert_eq!(d.push(at(1, 0x9000, 62 * S)).len(), 1);
        // A vma mapped anew at a freed one's address: the inventory's id
        // tells it apart.
        let again = |id| Alert {
            vma_id: id,
            ..at(1, 0x1000, 63 * S)
        };
        assert_eq!(d.push(again(7)).len(), 1);
        assert!(d.push(again(7)).is_empty());
        assert_eq!(d.push(again(8)).len(), 1);
        assert!(d.flush().is_empty(), "no follow-ups for once-per-vma rules");
        // The memory is bounded: the oldest vma is forgotten first.
        for i in 0..VMAS_REMEMBERED as u64 {
            d.push(at(3, 0x10_0000 + i * 0x10000, 100 * S));
        }
        assert_eq!(d.vmas.len(), VMAS_REMEMBERED);
        assert_eq!(
            d.push(at(1, 0x1000, 200 * S)).len(),
            1,
            "forgotten, so new again"
        );
    }

    #[test]
    fn a_window_is_small() {
        // WINDOWS_OPEN of them can be open: the table's size is this times
        // about twice that (CI's soak saw 480 bytes a window as 3.7 MiB).
        assert!(std::mem::size_of::<(Key, Open)>() <= 32);
    }

    #[test]
    fn open_windows_are_bounded() {
        let mut d = Dedup::new(std::time::Duration::from_secs(60));
        // One alert and one duplicate from each of more processes than
        // windows may be open.
        for tgid in 0..WINDOWS_OPEN as u32 {
            d.push(alert(RuleId::R6, tgid, S + u64::from(tgid), &["f"]));
        }
        d.push(alert(RuleId::R6, 0, 2 * S, &["f"]));
        assert_eq!(d.open.len(), WINDOWS_OPEN);
        // A new one closes the window that ends first (tgid 0's), whose
        // follow-up goes out with the new alert.
        let out = d.push(alert(RuleId::R6, 99_999, 3 * S, &["f"]));
        assert_eq!(d.open.len(), WINDOWS_OPEN);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].repeat && out[0].tgid == 0 && out[0].count == 1);
        assert_eq!(out[1].tgid, 99_999);
    }

    #[test]
    fn flush_returns_pending_follow_ups() {
        let mut d = Dedup::new(std::time::Duration::from_secs(60));
        d.push(alert(RuleId::R9, 1, S, &[]));
        d.push(alert(RuleId::R9, 1, 2 * S, &[]));
        d.push(alert(RuleId::R9, 1, 3 * S, &[]));
        let left = d.flush();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].count, 2);
        assert!(d.flush().is_empty());
    }
}
