//! The bad driver's alerts as journal entries, found the way an operator
//! filters them: `journalctl -u pfnwatch PFNWATCH_RULE=R6
//! PFNWATCH_SEVERITY=critical`.

use super::super::trigger;
use super::{Reporter, host};
use crate::scenario::Scenario;
use anyhow::Result;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Alerts reach the journal within a second or two of the scenario;
/// under TCG leave room.
const WAIT: Duration = Duration::from_secs(30);

/// `journalctl -u pfnwatch -o json MATCHES...`'s entries.
pub fn entries(matches: &[&str]) -> Vec<Value> {
    let mut args = vec!["-u", "pfnwatch", "-b", "-o", "json", "--no-pager"];
    args.extend_from_slice(matches);
    host::run("journalctl", &args)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// [`entries`], waiting up to [`WAIT`] for at least `n`.
pub fn wait_entries(matches: &[&str], n: usize) -> Vec<Value> {
    host::wait_for(WAIT, || Some(entries(matches)).filter(|e| e.len() >= n))
        .map(|(e, _)| e)
        .unwrap_or_else(|| entries(matches))
}

/// A field of an entry as text (journald sends binary values as arrays).
pub fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or("")
}

/// Every frame by symbol (`func+0xoff [module]`), none a bare address:
/// what /proc/kallsyms gives a CAP_SYSLOG holder it can read.
pub fn symbolised(call_path: &str) -> bool {
    !call_path.is_empty()
        && call_path
            .split(" <- ")
            .all(|frame| !frame.starts_with("0x") && frame.contains("+0x"))
}

/// The module's scenarios (R6, R7 critical; R2 warning through its fault
/// handler), then `journal/R6-critical` and `journal/R2-call-path`.
/// Returns when the scenarios ran, for Prometheus's timing.
pub fn bad_driver(rep: &mut Reporter) -> Result<Instant> {
    // The R6 lookups come right after the mmap: a device in use first.
    let _device = super::super::lookups::device_in_use(|| {
        super::super::daemon::scrape(super::service::PORT).ok()
    })?;
    let ran = Instant::now();
    trigger::run(Scenario::ModNormalPfnmap)?;
    trigger::run(Scenario::ModZeroCowPfnmap)?;

    let critical = wait_entries(&["PFNWATCH_RULE=R6", "PFNWATCH_SEVERITY=critical"], 1);
    let good = critical.iter().find(|e| {
        field(e, "PRIORITY") == "2"
            && field(e, "PFNWATCH_DRIVER") == "pfnwatch_badmod"
            && field(e, "PFNWATCH_FILE").contains("pfnw-normal-pfnmap")
            && symbolised(field(e, "PFNWATCH_CALL_PATH"))
    });
    rep.check(
        "journal/R6-critical",
        good.is_some(),
        &describe(good.or(critical.first()), critical.len()),
    );

    let warning = wait_entries(&["PFNWATCH_RULE=R2"], 1);
    let good = warning.iter().find(|e| {
        let path = field(e, "PFNWATCH_CALL_PATH");
        field(e, "PRIORITY") == "4"
            && field(e, "PFNWATCH_SEVERITY") == "warning"
            && symbolised(path)
            && path.contains("[pfnwatch_badmod]")
    });
    rep.check(
        "journal/R2-call-path",
        good.is_some(),
        &describe(good.or(warning.first()), warning.len()),
    );
    Ok(ran)
}

fn describe(entry: Option<&Value>, n: usize) -> String {
    match entry {
        None => format!("{n} entries"),
        Some(e) => format!(
            "{n} entries; PRIORITY {} driver {} file {} device {} comm {} pid {} call path: {}",
            field(e, "PRIORITY"),
            field(e, "PFNWATCH_DRIVER"),
            field(e, "PFNWATCH_FILE"),
            field(e, "PFNWATCH_DEVICE"),
            field(e, "PFNWATCH_COMM"),
            field(e, "PFNWATCH_PID"),
            field(e, "PFNWATCH_CALL_PATH")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_path_is_symbolised_only_if_every_frame_is() {
        assert!(symbolised(
            "vmf_insert_mixed+0x5 <- pfnw_fault+0x3c [pfnwatch_badmod] <- __do_fault+0x31"
        ));
        assert!(!symbolised("vmf_insert_mixed+0x5 <- 0xffffffffc00ad74e"));
        assert!(!symbolised(""));
        assert!(!symbolised("0xffffffffadcce175"));
    }
}
