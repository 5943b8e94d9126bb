//! Alerts in the log (tracing; journald-friendly key=value lines).

use crate::pipeline::Sink;
use crate::pipeline::alert::Alert;
use crate::rules::Severity;
use anyhow::Result;

pub struct AlertLog {
    /// Alerts below this severity are not logged (still written and counted).
    pub min: Severity,
}

impl Sink for AlertLog {
    fn alert(&mut self, alert: &Alert) -> Result<()> {
        if alert.severity < self.min {
            return Ok(());
        }
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
        Ok(())
    }
}
