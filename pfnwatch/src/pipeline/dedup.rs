//! Collapsing duplicate alerts: the same rule, process, device and call path
//! within a window is one alert with a count, so a looping driver cannot
//! flood the log. The first occurrence goes out at once; the duplicates
//! that follow within the window go out as one follow-up with their count.

use super::alert::Alert;
use crate::rules::RuleId;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    rule: RuleId,
    tgid: u32,
    device: Option<String>,
    file: Option<String>,
    stack: u64,
}

impl Key {
    fn of(a: &Alert) -> Key {
        let mut h = DefaultHasher::new();
        a.stack.hash(&mut h);
        Key {
            rule: a.rule,
            tgid: a.tgid,
            device: a.device.clone(),
            file: a.file.clone(),
            stack: h.finish(),
        }
    }
}

struct Open {
    /// The last duplicate seen, carrying the count of duplicates so far.
    pending: Option<Alert>,
    window_end: u64,
}

pub struct Dedup {
    window_ns: u64,
    open: HashMap<Key, Open>,
}

impl Dedup {
    pub fn new(window: std::time::Duration) -> Dedup {
        Dedup {
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            open: HashMap::new(),
        }
    }

    /// Takes an alert; returns what is due now: expired follow-ups first,
    /// then this alert if it opens a new window.
    pub fn push(&mut self, alert: Alert) -> Vec<Alert> {
        let mut out = self.expire(alert.first_ns);
        let key = Key::of(&alert);
        match self.open.get_mut(&key) {
            Some(open) => {
                let pending = open.pending.get_or_insert_with(|| Alert {
                    count: 0,
                    repeat: true,
                    first_ns: alert.first_ns,
                    time: alert.time.clone(),
                    ..alert.clone()
                });
                pending.count += alert.count;
                pending.last_ns = alert.last_ns;
            }
            None => {
                self.open.insert(
                    key,
                    Open {
                        pending: None,
                        window_end: alert.first_ns.saturating_add(self.window_ns),
                    },
                );
                out.push(alert);
            }
        }
        out
    }

    /// Closes the windows that ended by `now_ns`; returns their follow-ups.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Alert> {
        let mut due = Vec::new();
        self.open.retain(|_, open| {
            if open.window_end > now_ns {
                return true;
            }
            due.extend(open.pending.take());
            false
        });
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
            vm_start: 0,
            vm_end: 0,
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
