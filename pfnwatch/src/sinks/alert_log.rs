//! Alerts in the log. Under systemd each alert is a journal entry of its
//! own: MESSAGE is its one-line summary, PRIORITY follows the severity, and
//! `PFNWATCH_*` fields carry what an operator filters on
//! (`journalctl -u pfnwatch PFNWATCH_RULE=R6 PFNWATCH_SEVERITY=critical`).
//! Elsewhere, key=value lines on stderr.

use crate::logging::{self, ALERT_TARGET};
use crate::pipeline::Sink;
use crate::pipeline::alert::Alert;
use crate::rules::Severity;
use anyhow::Result;
use tracing::Level;

pub struct AlertLog {
    /// Alerts below this severity are not logged (still written and counted).
    pub min: Severity,
}

impl Sink for AlertLog {
    fn alert(&mut self, alert: &Alert) -> Result<()> {
        if alert.severity < self.min {
            return Ok(());
        }
        if logging::to_journal() {
            journal(alert);
        } else {
            stderr(alert);
        }
        Ok(())
    }
}

/// The level an alert is logged at; the journal layer turns it into PRIORITY
/// (`logging::alert_priorities`).
pub fn level(severity: Severity) -> Level {
    match severity {
        Severity::Critical => Level::ERROR,
        Severity::Warning => Level::WARN,
        Severity::Info => Level::INFO,
    }
}

/// An alert's journal entry, as (field, value) pairs: MESSAGE and PRIORITY
/// first, then the `PFNWATCH_*` fields an alert has (no driver, device or
/// file: no field).
pub fn journal_fields(alert: &Alert) -> Vec<(&'static str, String)> {
    let f = JournalAlert::of(alert);
    let mut fields = vec![
        ("MESSAGE", f.message),
        ("PRIORITY", priority(alert.severity).to_string()),
        ("PFNWATCH_RULE", f.rule.to_owned()),
        ("PFNWATCH_RULE_NAME", f.rule_name.to_owned()),
        ("PFNWATCH_SEVERITY", f.severity.to_owned()),
        ("PFNWATCH_COMM", f.comm.to_owned()),
        ("PFNWATCH_PID", f.pid.to_string()),
        ("PFNWATCH_COUNT", f.count.to_string()),
    ];
    for (name, value) in [
        ("PFNWATCH_DRIVER", f.driver),
        ("PFNWATCH_DEVICE", f.device),
        ("PFNWATCH_FILE", f.file),
    ] {
        if let Some(value) = value {
            fields.push((name, value.to_owned()));
        }
    }
    if !f.call_path.is_empty() {
        fields.push(("PFNWATCH_CALL_PATH", f.call_path));
    }
    fields
}

/// The syslog priority of a severity in the journal.
pub fn priority(severity: Severity) -> u8 {
    let mappings = logging::alert_priorities();
    let p = match level(severity) {
        Level::ERROR => mappings.error,
        Level::WARN => mappings.warn,
        _ => mappings.info,
    };
    // Priority is the ASCII digit journald reads.
    (p as u8).saturating_sub(b'0')
}

/// The values of an alert's journal fields, borrowed from it.
struct JournalAlert<'a> {
    message: String,
    rule: &'static str,
    rule_name: &'a str,
    severity: &'static str,
    comm: &'a str,
    pid: u32,
    count: u64,
    driver: Option<&'a str>,
    device: Option<&'a str>,
    file: Option<&'a str>,
    call_path: String,
}

impl<'a> JournalAlert<'a> {
    fn of(alert: &'a Alert) -> Self {
        JournalAlert {
            message: alert.summary(),
            rule: alert.rule.as_str(),
            rule_name: &alert.name,
            severity: alert.severity.as_str(),
            comm: &alert.comm,
            pid: alert.tgid,
            count: alert.count,
            driver: alert.driver.as_deref(),
            device: alert.device.as_deref(),
            file: alert.file.as_deref(),
            call_path: alert.stack.join(" <- "),
        }
    }
}

/// One event per alert; tracing-journald upper-cases the field names and
/// maps the level to PRIORITY. `Option` fields that are `None` are left out.
fn journal(alert: &Alert) {
    let f = JournalAlert::of(alert);
    let call_path = (!f.call_path.is_empty()).then_some(f.call_path.as_str());
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: ALERT_TARGET,
                $level,
                pfnwatch_rule = f.rule,
                pfnwatch_rule_name = f.rule_name,
                pfnwatch_severity = f.severity,
                pfnwatch_comm = f.comm,
                pfnwatch_pid = f.pid,
                pfnwatch_count = f.count,
                pfnwatch_driver = f.driver,
                pfnwatch_device = f.device,
                pfnwatch_file = f.file,
                pfnwatch_call_path = call_path,
                "{}",
                f.message
            )
        };
    }
    // event! needs its level as a constant.
    match level(alert.severity) {
        Level::ERROR => emit!(Level::ERROR),
        Level::WARN => emit!(Level::WARN),
        _ => emit!(Level::INFO),
    }
}

fn stderr(alert: &Alert) {
    let line = alert.summary();
    let stack = alert.stack.join(" <- ");
    match alert.severity {
        Severity::Critical | Severity::Warning => tracing::warn!(
            rule = %alert.rule, severity = %alert.severity, pid = alert.tgid,
            comm = %alert.comm, count = alert.count, stack = %stack, "{line}"
        ),
        Severity::Info => tracing::info!(
            rule = %alert.rule, severity = %alert.severity, pid = alert.tgid,
            comm = %alert.comm, count = alert.count, stack = %stack, "{line}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleId;
    use pfnwatch_common::{Class, Hook};
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    fn alert(severity: Severity, driver: Option<&str>, stack: &[&str]) -> Alert {
        Alert {
            rule: RuleId::R6,
            name: "normal_page_in_shared_pfnmap".into(),
            severity,
            time: "t".into(),
            first_ns: 1,
            last_ns: 1,
            count: 1,
            repeat: false,
            hook: Hook::VmNormalPage,
            class: Class(0),
            pid: 41,
            tgid: 40,
            comm: "pfnwatch-scenar".into(),
            cgroup_id: 1,
            cgroup: None,
            container: None,
            file: Some("/dev/pfnw-normal-pfnmap".into()),
            device: Some("10:123".into()),
            driver: driver.map(str::to_owned),
            handlers: None,
            vm_start: 0x7f00_0000_0000,
            vm_end: 0x7f00_0000_4000,
            vma_id: 3,
            vm_flags: 0,
            vm_flags_names: vec!["PFNMAP".into()],
            addr: 0x7f00_0000_0000,
            pfn: Some(0x1234),
            vm_pgoff: 0,
            expected_pfn: 0,
            stack: stack.iter().map(|s| s.to_string()).collect(),
            explanation: String::new(),
        }
    }

    #[test]
    fn an_alert_becomes_filterable_journal_fields() {
        let a = alert(
            Severity::Critical,
            Some("pfnwatch_badmod"),
            &["vm_normal_page+0x5", "copy_pte_range+0x1f0"],
        );
        let fields = journal_fields(&a);
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "MESSAGE",
                "PRIORITY",
                "PFNWATCH_RULE",
                "PFNWATCH_RULE_NAME",
                "PFNWATCH_SEVERITY",
                "PFNWATCH_COMM",
                "PFNWATCH_PID",
                "PFNWATCH_COUNT",
                "PFNWATCH_DRIVER",
                "PFNWATCH_DEVICE",
                "PFNWATCH_FILE",
                "PFNWATCH_CALL_PATH"
            ]
        );
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("MESSAGE"), Some(a.summary().as_str()));
        assert_eq!(get("PRIORITY"), Some("2"));
        assert_eq!(get("PFNWATCH_RULE"), Some("R6"));
        assert_eq!(
            get("PFNWATCH_RULE_NAME"),
            Some("normal_page_in_shared_pfnmap")
        );
        assert_eq!(get("PFNWATCH_SEVERITY"), Some("critical"));
        assert_eq!(get("PFNWATCH_PID"), Some("40"));
        assert_eq!(get("PFNWATCH_DRIVER"), Some("pfnwatch_badmod"));
        assert_eq!(get("PFNWATCH_DEVICE"), Some("10:123"));
        assert_eq!(get("PFNWATCH_FILE"), Some("/dev/pfnw-normal-pfnmap"));
        assert_eq!(
            get("PFNWATCH_CALL_PATH"),
            Some("vm_normal_page+0x5 <- copy_pte_range+0x1f0")
        );

        // What an alert lacks is no field at all.
        let bare = journal_fields(&alert(Severity::Info, None, &[]));
        assert!(
            bare.iter()
                .all(|(n, _)| *n != "PFNWATCH_DRIVER" && *n != "PFNWATCH_CALL_PATH")
        );
    }

    #[test]
    fn priority_follows_severity() {
        assert_eq!(
            [Severity::Critical, Severity::Warning, Severity::Info].map(priority),
            [2, 4, 6]
        );
    }

    /// The fields of the events logged, as tracing-journald names them.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<(String, String)>>>);

    impl Visit for Seen {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let name = match field.name() {
                "message" => "MESSAGE".to_owned(),
                name => name.to_ascii_uppercase(),
            };
            if let Ok(mut seen) = self.0.lock() {
                seen.push((name, format!("{value:?}")));
            }
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push((field.name().to_ascii_uppercase(), value.to_owned()));
            }
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            assert_eq!(event.metadata().target(), ALERT_TARGET);
            event.record(&mut self.clone());
        }
    }

    #[test]
    fn the_logged_event_carries_exactly_the_journal_fields() {
        for a in [
            alert(
                Severity::Warning,
                Some("pfnwatch_badmod"),
                &["a+0x1", "b+0x2"],
            ),
            alert(Severity::Info, None, &[]),
        ] {
            let seen = Seen::default();
            let subscriber = tracing_subscriber::registry().with(seen.clone());
            tracing::subscriber::with_default(subscriber, || journal(&a));
            let mut logged = seen.0.lock().unwrap().clone();
            let mut want: Vec<(String, String)> = journal_fields(&a)
                .into_iter()
                .filter(|(n, _)| *n != "PRIORITY")
                .map(|(n, v)| (n.to_owned(), v))
                .collect();
            logged.sort();
            want.sort();
            assert_eq!(logged, want);
        }
    }
}
